import type { OptionSpec, OptionSpecs, PositionalSpec } from "./command.ts";
import type { Colors } from "./output.ts";
import type { CommandNode, Registry } from "./registry.ts";

/** Help for any node of the tree: the root, a group or a command. */
export function renderHelp(node: CommandNode, registry: Registry, colors: Colors): string {
  const sections: string[] = [];
  const name = ["zectre", ...node.path].join(" ");
  const heading = (text: string) => colors.bold(text);
  const command = node.command;

  if (command) {
    sections.push(`${heading("Usage:")} ${command.usage ?? usageLine(name, command.options, command.positionals)}`);
    sections.push(command.description ? `${command.summary}.\n\n${wrap(command.description)}` : `${command.summary}.`);
    if (command.positionals.length > 0) {
      sections.push(`${heading("Arguments:")}\n${columns(command.positionals.map((p) => [positionalLabel(p), p.description]))}`);
    }
    const own = Object.entries(command.options);
    if (own.length > 0) sections.push(`${heading("Options:")}\n${optionRows(own)}`);
  } else {
    sections.push(`${heading("Usage:")} ${name} <command> [flags]`);
    sections.push(node.description ? `${node.summary}.\n\n${wrap(node.description)}` : `${node.summary}.`);
    const children = [...node.children.values()].map((child): [string, string] => [child.children.size > 0 ? `${child.name} ...` : child.name, child.summary]);
    sections.push(`${heading("Commands:")}\n${columns(children)}`);
  }
  sections.push(`${heading("Global flags:")}\n${optionRows(Object.entries(registry.globalOptions))}`);
  if (command && command.examples.length > 0) {
    sections.push(`${heading("Examples:")}\n${command.examples.map((example) => `  ${example}`).join("\n")}`);
  }
  if (!command) sections.push(`Run '${name} <command> --help' for the flags of a command.`);
  return `${sections.join("\n\n")}\n`;
}

function usageLine(name: string, options: OptionSpecs, positionals: readonly PositionalSpec[]): string {
  const parts = [name];
  for (const [option, spec] of Object.entries(options)) {
    const flag = spec.type === "boolean" ? `--${option}` : `--${option} ${valueName(option, spec)}`;
    parts.push(`${spec.required ? flag : `[${flag}]`}${spec.multiple ? "..." : ""}`);
  }
  for (const positional of positionals) parts.push(positional.required ? positionalLabel(positional) : `[${positionalLabel(positional)}]`);
  return parts.join(" ");
}

function positionalLabel(positional: PositionalSpec): string {
  return `${positional.name.toUpperCase()}${positional.variadic ? "..." : ""}`;
}

/** Choices are short enough to show in place of the value name: `--scope read|operate|admin`. */
function valueName(name: string, spec: OptionSpec): string {
  return spec.choices ? spec.choices.join("|") : (spec.valueName ?? name.toUpperCase());
}

function optionRows(options: readonly (readonly [string, OptionSpec])[]): string {
  return columns(
    options.map(([name, spec]) => {
      const long = spec.type === "boolean" ? `--${name}` : `--${name} ${valueName(name, spec)}`;
      const label = spec.short ? `-${spec.short}, ${long}` : `    ${long}`;
      const notes = [spec.required ? "required" : "", spec.multiple ? "repeatable" : ""].filter(Boolean);
      return [label, notes.length > 0 ? `${spec.description} (${notes.join(", ")})` : spec.description];
    }),
  );
}

function columns(rows: readonly (readonly [string, string])[]): string {
  const width = Math.max(...rows.map(([label]) => label.length));
  return rows.map(([label, text]) => `  ${label.padEnd(width)}   ${text}`).join("\n");
}

function wrap(text: string, width = 78): string {
  return text
    .split("\n")
    .map((paragraph) => {
      const lines: string[] = [];
      let line = "";
      for (const word of paragraph.split(/\s+/).filter(Boolean)) {
        if (line && line.length + 1 + word.length > width) {
          lines.push(line);
          line = word;
        } else {
          line = line ? `${line} ${word}` : word;
        }
      }
      lines.push(line);
      return lines.join("\n");
    })
    .join("\n");
}
