// Lint rules for lib/, test/, bench/, scripts/ and examples/. Formatting is Prettier's job
// (.prettierrc.json); this file only holds rules about meaning. Function length is a warning
// whose limit we lower as long functions get split (issue 12): lower it, never raise it.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const MAX_FUNCTION_LINES = 80;

export default tseslint.config(
  { ignores: ['dist/', 'build/', 'third_party/', 'prebuilds/', 'node_modules/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: 'module',
      globals: {
        process: 'readonly',
        Buffer: 'readonly',
        console: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        setImmediate: 'readonly',
        clearImmediate: 'readonly',
        queueMicrotask: 'readonly',
        URL: 'readonly',
        URLSearchParams: 'readonly',
        AbortController: 'readonly',
        AbortSignal: 'readonly',
        fetch: 'readonly',
        TextEncoder: 'readonly',
        TextDecoder: 'readonly',
        performance: 'readonly',
        structuredClone: 'readonly',
        __dirname: 'readonly',
        require: 'readonly',
        module: 'writable',
        globalThis: 'readonly',
      },
    },
    rules: {
      'max-lines-per-function': [
        'warn',
        { max: MAX_FUNCTION_LINES, skipBlankLines: true, skipComments: true },
      ],
      // The store's dynamic parts (user schemas, msgpack values) are typed `any` on purpose.
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' },
      ],
      '@typescript-eslint/no-non-null-assertion': 'off',
      'no-constant-condition': ['error', { checkLoops: false }],
      // `let x!: T` assigned once after a closure that reads it is not a `const` candidate.
      'prefer-const': ['error', { destructuring: 'all', ignoreReadBeforeAssign: true }],
    },
  },
  {
    files: ['test/**', 'bench/**'],
    rules: { 'max-lines-per-function': 'off' },
  },
  {
    // Type tests are compiled, never run: their expressions and unused names are the point.
    files: ['test/types/**'],
    rules: {
      '@typescript-eslint/no-unused-vars': 'off',
      '@typescript-eslint/no-unused-expressions': 'off',
      '@typescript-eslint/no-require-imports': 'off',
    },
  },
);
