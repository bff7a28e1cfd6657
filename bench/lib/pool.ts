export { mapPool } from "../../lib/map-pool.ts";

export function seconds(fromMs: number, toMs: number): number {
  return Math.round((toMs - fromMs) / 10) / 100;
}
