// Parses .move files with the Sui Move tree-sitter grammar and reports every ERROR or MISSING
// node as `file:line:column: ...`. Exit status 1 when any file has one, 2 on usage errors.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const Parser = require('web-tree-sitter');
const pluginDir = path.dirname(require.resolve('@mysten/prettier-plugin-move/package.json'));

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('usage: node parse.mjs FILE.move...');
  process.exit(2);
}

await Parser.init();
const language = await Parser.Language.load(path.join(pluginDir, 'tree-sitter-move.wasm'));
const parser = new Parser();
parser.setLanguage(language);

let problems = 0;
for (const file of files) {
  const text = readFileSync(file, 'utf8');
  const tree = parser.parse(text);
  const stack = [tree.rootNode];
  while (stack.length > 0) {
    const node = stack.pop();
    if (!node.hasError() && !node.isMissing()) continue;
    const where = `${file}:${node.startPosition.row + 1}:${node.startPosition.column + 1}`;
    if (node.isMissing()) {
      console.log(`${where}: syntax error (missing ${node.type})`);
      problems += 1;
    } else if (node.type === 'ERROR') {
      const snippet = text.slice(node.startIndex, Math.min(node.endIndex, node.startIndex + 40));
      console.log(`${where}: syntax error (unexpected ${JSON.stringify(snippet)})`);
      problems += 1;
    }
    for (let i = node.childCount - 1; i >= 0; i -= 1) stack.push(node.child(i));
  }
}
console.log(`check-move: ${files.length} file(s), ${problems} syntax error(s)`);
process.exit(problems === 0 ? 0 : 1);
