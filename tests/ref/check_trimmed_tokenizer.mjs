// The same check as check_trimmed_tokenizer.py, through Hugging Face's Rust `tokenizers` Node
// binding (npm `tokenizers`, 0.23.2, the binding the tokenizer vectors were cross-checked with):
// a trimmed tokenizer.json loads, gives gemma3.c's ids, and the full tokenizer's pieces wherever
// they were all kept. From the repository root, with a built ./gemma3:
//
//   npm install --prefix /tmp/hf tokenizers@0.23.2
//   NODE_PATH=/tmp/hf/node_modules node tests/ref/check_trimmed_tokenizer.mjs [models/default/tokenizer.json]
import { createRequire } from "module";
import { execFileSync } from "child_process";
import { readFileSync, writeFileSync, mkdtempSync } from "fs";
import { gunzipSync } from "zlib";
import { tmpdir } from "os";
import { join } from "path";

const require = createRequire(join(process.env.NODE_PATH || ".", "x.js"));
const { Tokenizer } = require("tokenizers");
const trimmedPath = process.argv[2] || "models/default/tokenizer.json";
const dir = mkdtempSync(join(tmpdir(), "trimcheck-"));
writeFileSync(join(dir, "full.json"), gunzipSync(readFileSync("tests/data/tokenizer/tokenizer.json.gz")));
const full = Tokenizer.fromFile(join(dir, "full.json"));
const trimmed = Tokenizer.fromFile(trimmedPath);

const texts = [];
for (const line of readFileSync("tests/data/tokenizer/vectors_public.jsonl", "utf8").split("\n"))
  if (line.trim()) texts.push(JSON.parse(line).text);
for (const line of readFileSync("tests/data/books_sample.txt", "utf8").split("\n")) {
  if (!line) continue;
  texts.push(line);
  const words = line.split(" ");
  texts.push(words[0], ...words.slice(1).map((w) => " " + w));
}
writeFileSync(join(dir, "in.jsonl"), texts.map((t) => JSON.stringify({ text: t, add_bos: false })).join("\n") + "\n");
const ours = execFileSync("./gemma3", ["tokenize", "--tokenizer", trimmedPath, "--input", join(dir, "in.jsonl")], {
  maxBuffer: 1 << 28,
}).toString().trim().split("\n").map((l) => JSON.parse(l).ids);

const vocab = trimmed.getVocab();
let same = 0, allKept = 0, keptSame = 0, round = 0;
for (let i = 0; i < texts.length; i++) {
  const tp = await trimmed.encode(texts[i], null, { addSpecialTokens: false });
  const fp = await full.encode(texts[i], null, { addSpecialTokens: false });
  same += JSON.stringify(tp.getIds()) === JSON.stringify(ours[i]);
  if (fp.getTokens().every((p) => p in vocab)) {
    allKept++;
    keptSame += JSON.stringify(fp.getTokens()) === JSON.stringify(tp.getTokens());
  }
  round += (await trimmed.decode(tp.getIds(), false)) === (await full.decode(fp.getIds(), false));
}
console.log(`${trimmedPath}: vocabulary ${trimmed.getVocabSize()}; ids equal gemma3.c's for ${same}/${texts.length} texts`);
console.log(`texts whose full-tokenizer pieces are all kept: ${allKept}; same pieces from the trimmed one: ${keptSame}`);
console.log(`decode(encode(text)) equal to the full tokenizer's: ${round}/${texts.length}`);
const ok = same === texts.length && allKept === keptSame && round === texts.length && allKept > 0;
console.log(ok ? "OK" : "FAILED");
process.exit(ok ? 0 : 1);
