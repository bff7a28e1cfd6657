/** Bumped with package.json; reported by /healthz and `zectre status`. */
export const ZECTRE_VERSION = "0.1.0";
