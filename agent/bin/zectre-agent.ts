#!/usr/bin/env node
import { homedir } from "node:os";
import { main } from "../src/main.ts";

// `zectre-agent facts | head -1` closes the pipe early; that is not an error worth a stack trace.
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code !== "EPIPE") throw error;
});

process.exitCode = await main(process.argv.slice(2), {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  uid: process.getuid?.(),
  home: homedir(),
  execPath: process.execPath,
});
