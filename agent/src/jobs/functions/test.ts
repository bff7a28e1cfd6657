import { optionalNumber, requiredText } from "../args.ts";
import { abortReason, FunctionError, type JobFunction } from "../types.ts";

/** `test.*`: liveness and plumbing checks that touch nothing. */

/** Longer than any job may run (24 h), so a typo cannot park a timer for years. */
const MAX_SLEEP_SECONDS = 24 * 3600;

export const testFunctions: readonly JobFunction[] = [
  {
    name: "test.ping",
    doc: "Returns true: the agent is up and running jobs.",
    mutates: false,
    run: () => true,
  },
  {
    name: "test.echo",
    doc: "Returns its text (text= or the first positional argument).",
    mutates: false,
    run: (args) => requiredText(args, "test.echo", "text", 0),
  },
  {
    name: "test.sleep",
    doc: "Sleeps for seconds= (or the first positional argument) and returns true; can be canceled.",
    mutates: false,
    run: (args, context) => {
      const seconds = optionalNumber(args, "seconds", 0);
      if (seconds === undefined) throw new FunctionError("test.sleep needs seconds (seconds= or positional argument 1)");
      if (seconds < 0 || seconds > MAX_SLEEP_SECONDS) throw new FunctionError(`seconds must be between 0 and ${MAX_SLEEP_SECONDS}`);
      return sleep(seconds * 1000, context.signal).then(() => true);
    },
  },
];

/** Resolves after `ms`, or rejects with the abort reason as soon as the signal fires. */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(abortReason(signal));
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortReason(signal));
    };
    const timer = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal.addEventListener("abort", onAbort, { once: true });
  });
}
