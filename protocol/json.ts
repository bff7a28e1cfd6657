/**
 * JSON values, typed shallowly on purpose: zod's recursive JSON type, a recursive
 * alias and `unknown` all break Durable Object RPC stub types (too deep, or `never`).
 */
export type JsonValue = string | number | boolean | null | object;
export type JsonObject = { [key: string]: JsonValue };
