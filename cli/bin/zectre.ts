#!/usr/bin/env node
import { main, processIo } from "../src/main.ts";

// `zectre token list | head -1` closes the pipe early; that is not an error worth a stack trace.
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code !== "EPIPE") throw error;
});

process.exitCode = await main(process.argv.slice(2), processIo());
