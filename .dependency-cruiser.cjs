/**
 * The layers of Bourse, checked by `npm run check`:
 * - the platform (process shape, connections, HTTP, Kafka, metrics) imports no domain;
 * - a domain imports another domain only through that domain's `index.ts`;
 * - no domain imports the services (they compose domains, not the other way);
 * - a domain's db/ (its tables and migrations) imports only the platform and itself:
 *   src/database.ts composes it, and the domain's code imports src/database.ts;
 * - no import cycles.
 */
const domains = '(auth|market|trading|events|alerts|btc|operations|dashboard)'

/** @type {import('dependency-cruiser').IConfiguration} */
module.exports = {
  forbidden: [
    {
      name: 'platform-imports-no-domain',
      comment: 'src/platform is shared infrastructure: it must not know any domain (pass what it needs in).',
      severity: 'error',
      from: { path: '^src/platform/' },
      to: { path: `^src/${domains}/` },
    },
    {
      name: 'platform-imports-no-service',
      severity: 'error',
      from: { path: '^src/platform/' },
      to: { path: '^src/(services/|cli\\.ts)' },
    },
    {
      name: 'domain-through-index',
      comment: "A domain uses another domain only through its public index.ts, never its internals.",
      severity: 'error',
      from: { path: `^src/${domains}/` },
      to: { path: `^src/${domains}/`, pathNot: ['^src/$1/', `^src/${domains}/index\\.ts$`] },
    },
    {
      name: 'domain-imports-no-service',
      severity: 'error',
      from: { path: `^src/${domains}/` },
      to: { path: '^src/(services/|cli\\.ts)' },
    },
    {
      name: 'domain-db-imports-only-platform',
      comment: "A domain's db/ is composed by src/database.ts, which the domain's code imports: importing that code back would be a cycle.",
      severity: 'error',
      from: { path: `^src/${domains}/db/` },
      to: { path: '^src/', pathNot: ['^src/$1/db/', '^src/platform/'] },
    },
    {
      name: 'no-circular',
      severity: 'error',
      from: {},
      to: { circular: true },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    includeOnly: '^src/',
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { extensions: ['.ts', '.js'] },
  },
}
