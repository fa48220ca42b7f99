// ESLint for the dashboard's JavaScript (make lint runs it from the repository
// root with this config). The code is browser ES modules, no build step.
import js from "@eslint/js";
import globals from "globals";
import { fileURLToPath } from "node:url";

export default [
  {
    // Paths below are relative to the repository root, two levels up.
    basePath: fileURLToPath(new URL("../..", import.meta.url)),
    files: ["controlplane/web/static/js/**/*.js"],
    ...js.configs.recommended,
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "module",
      globals: globals.browser,
    },
    rules: {
      ...js.configs.recommended.rules,
      eqeqeq: ["error", "always"],
      "no-var": "error",
      "prefer-const": "error",
    },
  },
];
