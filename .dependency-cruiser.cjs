/**
 * The layers of Bourse, checked by `npm run check`:
 * - the platform (process shape, connections, HTTP, Kafka, metrics) imports no domain;
 * - a domain imports another domain only through that domain's `index.ts`;
 * - no domain imports the services (they compose domains, not the other way);
 * - no import cycles.
 */
const domains = '(auth|market|trading|events|alerts|btc|operations)'

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
