// @ts-check
/**
 * Shapes of the API answers the dashboard reads (a subset of protocol/*.ts, which the browser cannot import).
 * @typedef {{ org: string, tokenName: string, scope: string }} Identity
 * @typedef {{ id: string, state: string, online: boolean, lastSeen: string | null, labels: Record<string, string>,
 *   os: string | null, arch: string | null, hostname: string | null, agentVersion: string | null,
 *   enrolledAt: string, stateReason: string | null }} NodeSummary
 * @typedef {NodeSummary & { facts: Record<string, unknown> | null, connectedAt: string | null }} NodeDetail
 * @typedef {{ targets: number, returned: number, succeeded: number, failed: number, unreachable: number }} JobCounts
 * @typedef {{ jid: string, function: string, target: string, status: string, user: string, createdAt: string,
 *   updatedAt: string, counts: JobCounts }} JobSummary
 * @typedef {{ success: boolean, retcode: number | null, result: unknown, error: string | null, durationMs: number,
 *   synthetic: boolean }} JobReturn
 * @typedef {{ nodeId: string, state: string, returnedAt: string | null, return: JobReturn | null }} JobTarget
 * @typedef {JobSummary & { args: Record<string, unknown>, timeout: number, finishedAt: string | null,
 *   targets: JobTarget[] }} JobRecord
 * @typedef {{ seq: number, ts: string, type: string, nodeId: string | null, data: Record<string, unknown> }} JobEvent
 * @typedef {{ taskId: string, deploymentId: string, nodeId: string, state: string, desired: string,
 *   hostPort: number | null, restarts: number, message: string | null, updatedAt: string }} TaskRecord
 * @typedef {{ id: string, app: string, createdAt: string, createdBy: string, status: string, promoted: boolean,
 *   replicas: number, tasks: TaskRecord[] }} DeploymentRecord
 * @typedef {{ name: string, createdAt: string, createdBy: string, promoted: string | null, latest: string | null }} AppSummary
 * @typedef {{ deployment: DeploymentRecord, previewUrl: string, appUrl: string }} DeploymentView
 * @typedef {{ seq: number, ts: string, stream: string, line: string, nodeId: string, taskId: string,
 *   deploymentId: string }} LogLine
 * @typedef {{ id: number, at: string, actor: string, tokenName: string | null, action: string, target: string,
 *   status: number | null, ip: string | null, requestId: string | null }} AuditEntry
 */

export {};
