/** Design "Jobs": silent targets get one re-send after 5 s; offline-at-dispatch ones become unreachable after the grace. */
export const RESEND_AFTER_MS = 5_000;
export const UNREACHABLE_AFTER_MS = 10_000;
export const DEFAULT_RETENTION_DAYS = 7;

export function retentionMs(env: { JOB_RETENTION_DAYS?: string }): number {
  const days = Number(env.JOB_RETENTION_DAYS ?? DEFAULT_RETENTION_DAYS);
  return (Number.isFinite(days) && days > 0 ? days : DEFAULT_RETENTION_DAYS) * 86_400_000;
}
