// One linter for the whole repo: typescript-eslint with type information, so that
// floating promises and misused promises are errors.
import js from '@eslint/js'
import globals from 'globals'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  { ignores: ['node_modules/**', '.bourse/**', 'tmp/**', 'bench/results/**', '.dependency-cruiser.cjs'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      globals: globals.node,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [
            { from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite'] },
          ],
        },
      ],
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  {
    // The BTC money path (provider answers, the quote, amounts, orders) never turns a price
    // or an amount into a binary float: decimal strings and big.js only.
    files: ['src/btc/btc-amount.ts', 'src/btc/btc-orders.repository.ts', 'src/btc/btc.routes.ts', 'src/btc/quote.ts', 'src/btc/providers.ts', 'src/btc/price-poller.ts'],
    rules: {
      'no-restricted-syntax': [
        'error',
        { selector: "CallExpression[callee.name='parseFloat']", message: 'money is exact: use big.js, never parseFloat' },
        { selector: "CallExpression[callee.name='Number']", message: 'money is exact: use big.js, never Number()' },
        { selector: "MemberExpression[object.name='Number'][property.name=/^parse/]", message: 'money is exact: use big.js, never Number.parse*' },
        { selector: "UnaryExpression[operator='+']", message: 'money is exact: no unary + (a float conversion)' },
        { selector: "MemberExpression[object.name='Math'][property.name=/^(round|floor|ceil|trunc|fround)$/]", message: 'money is exact: round with big.js' },
      ],
    },
  },
  { files: ['**/*.js'], extends: [tseslint.configs.disableTypeChecked] },
  // Pages' scripts run in the browser.
  { files: ['src/*/page/**/*.js', 'src/*/admin/**/*.js'], languageOptions: { globals: globals.browser } },
)
