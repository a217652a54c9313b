// ESLint for the booking page (run by `npm run lint`, in CI through scripts/test-web.sh):
// JavaScript's recommended rules, typescript-eslint's strict set (which forbids `!` non-null
// assertions) and the React hooks rules (which apply to Preact's hooks as well).
import js from "@eslint/js";
import reactHooks from "eslint-plugin-react-hooks";
import globals from "globals";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["dist/", "src/gen/", "node_modules/", "e2e/screenshots/"] },
  js.configs.recommended,
  ...tseslint.configs.strict,
  reactHooks.configs.flat.recommended,
  {
    files: ["**/*.{ts,tsx,js,mjs}"],
    languageOptions: { globals: { ...globals.browser, ...globals.node } },
    rules: {
      "@typescript-eslint/no-non-null-assertion": "error",
    },
  },
);
