// ESLint (flat config): typescript-eslint's strict type-checked rules, and
// the layer rules of ARCHITECTURE.md: src/protocol (like e2ee-core)
// imports nothing from the other layers and does no IO, no clock and no
// randomness of its own; src/transport does not import src/client.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['node_modules/', 'dist/'] },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/restrict-template-expressions': ['error', { allowNumber: true }],
    },
  },
  {
    files: ['src/protocol/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['../*'], message: 'src/protocol imports nothing from the other layers' },
            { group: ['node:*'], message: 'src/protocol does no IO' },
          ],
        },
      ],
      'no-restricted-globals': [
        'error',
        ...['fetch', 'WebSocket', 'indexedDB', 'localStorage', 'window', 'document', 'navigator'].map(
          (name) => ({ name, message: 'src/protocol does no IO' }),
        ),
        { name: 'Date', message: 'src/protocol reads no clock: time is passed in' },
        { name: 'performance', message: 'src/protocol reads no clock: time is passed in' },
        { name: 'crypto', message: 'src/protocol draws no randomness: it is passed in' },
        { name: 'setTimeout', message: 'src/protocol has no timers' },
      ],
    },
  },
  {
    files: ['src/transport/**/*.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            { group: ['../client/*'], message: 'the transport layer does not know the client above it' },
          ],
        },
      ],
    },
  },
  {
    files: ['eslint.config.js'],
    ...tseslint.configs.disableTypeChecked,
  },
);
