import { closest } from "../args.ts";
import { defineCommand, type Entry } from "../command.ts";
import { UsageError } from "../errors.ts";
import { renderHelp } from "../help.ts";

const help = defineCommand({
  path: ["help"],
  summary: "Show help for a command or group (same as adding --help)",
  positionals: [{ name: "command", variadic: true, description: "The command words, e.g. 'token create'" }],
  examples: ["zectre help token", "zectre help token create"],
  async run(ctx) {
    const words = ctx.args.command;
    let node = ctx.registry.root;
    for (const word of words) {
      const child = node.children.get(word);
      if (!child) {
        const hint = closest(word, [...node.children.keys()]);
        const suggestion = hint ? ` (did you mean '${[...node.path, hint].join(" ")}'?)` : "";
        throw new UsageError(`unknown command '${[...node.path, word].join(" ")}'${suggestion}`);
      }
      node = child;
    }
    ctx.io.stdout.write(renderHelp(node, ctx.registry, ctx.out.colors));
  },
});

export const helpCommands: readonly Entry[] = [help];
