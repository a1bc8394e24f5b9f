/** Plain-text tables for the terminal, as the admin commands print them. */

/**
 * Rows under a header as aligned columns: every cell padded to the widest of its column,
 * two spaces between columns, no trailing spaces (so a long last column does not widen
 * the others and the lines stay easy to `grep` and `cut`).
 */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [header, ...rows]
  const widths = header.map((_, i) => Math.max(...all.map((row) => row[i]?.length ?? 0)))
  return all.map((row) => row.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join('  ').trimEnd()).join('\n')
}
