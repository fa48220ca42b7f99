// Editing the search-box text as the filter chips need it. The API parses
// and validates the text (controlplane/search/domain/grammar.py, via ?query=); this
// module only splits it into tokens the same way, so a chip can add or
// remove `key:value` without touching the rest of what the user typed.
// The keys are the API's (schema.jobSyntax()); configure() sets them before use.

let FILTER_KEYS = [];
let KEYS = [];

export function configure({ filterKeys, keys }) {
  FILTER_KEYS = [...filterKeys];
  KEYS = [...keys];
}
const FILTER = /^(-?)([A-Za-z_]+)(>=|<=|:|>|<)([\s\S]*)$/;

// Whitespace-separated raw tokens; whitespace inside "quotes" does not split.
export function tokens(text) {
  const out = [];
  let i = 0;
  while (i < text.length) {
    if (/\s/.test(text[i])) {
      i += 1;
      continue;
    }
    const start = i;
    while (i < text.length && !/\s/.test(text[i])) {
      if (text[i] === '"') {
        i += 1;
        while (i < text.length && text[i] !== '"') i += text[i] === "\\" ? 2 : 1;
      }
      i += 1;
    }
    out.push(text.slice(start, Math.min(i, text.length)));
  }
  return out;
}

function unquote(raw) {
  if (raw.length >= 2 && raw.startsWith('"') && raw.endsWith('"')) return raw.slice(1, -1).replace(/\\(["\\])/g, "$1");
  return raw;
}

// {key, op, values, negated} for a key token, {term} for free text.
export function parseToken(raw) {
  const match = FILTER.exec(raw);
  if (match && KEYS.includes(match[2].toLowerCase())) {
    const key = match[2].toLowerCase();
    const value = unquote(match[4]);
    return { key, op: match[3], negated: match[1] === "-", value, values: value.split(",").filter(Boolean) };
  }
  return { term: unquote(raw) };
}

function normal(key, value) {
  return key === "host" ? value : value.toLowerCase();
}

// The values each key filters on (not negated), e.g. {status: ["failed"]}.
export function filters(text) {
  const out = {};
  for (const raw of tokens(text)) {
    const t = parseToken(raw);
    if (t.key && FILTER_KEYS.includes(t.key) && !t.negated && t.op === ":") {
      out[t.key] = [...(out[t.key] ?? []), ...t.values.map((v) => normal(t.key, v))];
    }
  }
  return out;
}

// The free-text terms (words and phrases), for highlighting matches.
export function terms(text) {
  return tokens(text)
    .map(parseToken)
    .filter((t) => t.term !== undefined && t.term.trim())
    .map((t) => t.term);
}

function quoteValue(value) {
  return /[\s",]/.test(value) ? `"${value.replace(/["\\]/g, "\\$&")}"` : value;
}

function isKeyToken(t, key) {
  return t.key === key && !t.negated && t.op === ":";
}

// Add `key:value`, or take it out if the text already filters on it.
export function toggle(text, key, value) {
  const want = normal(key, value);
  const parts = tokens(text);
  let removed = false;
  const kept = [];
  for (const raw of parts) {
    const t = parseToken(raw);
    if (isKeyToken(t, key) && t.values.some((v) => normal(key, v) === want)) {
      removed = true;
      const rest = t.values.filter((v) => normal(key, v) !== want);
      if (rest.length) kept.push(`${key}:${rest.map(quoteValue).join(",")}`);
    } else {
      kept.push(raw);
    }
  }
  if (!removed) kept.push(`${key}:${quoteValue(value)}`);
  return kept.join(" ");
}

// The text filtering on exactly `key:value` instead of its own `key:` tokens.
export function only(text, key, value) {
  const kept = tokens(text).filter((raw) => !isKeyToken(parseToken(raw), key));
  return [...kept, `${key}:${quoteValue(value)}`].join(" ");
}

// The text without any token of these keys (negated ones included).
export function without(text, keys) {
  return tokens(text)
    .filter((raw) => !keys.includes(parseToken(raw).key))
    .join(" ");
}

// The time-range chip: replaces since:/created… with `since:<span>` (or nothing for "any").
export function withSince(text, span) {
  const rest = without(text, ["since", "created"]);
  return span ? `${rest} since:${span}`.trim() : rest;
}

export function since(text) {
  const found = tokens(text).map(parseToken).filter((t) => t.key === "since");
  return found.length === 1 ? found[0].value.toLowerCase() : null;
}

export function hasTimeRange(text) {
  return tokens(text).some((raw) => ["since", "created"].includes(parseToken(raw).key));
}

// --- highlighting ---------------------------------------------------------------

function escape(word) {
  return word.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

// A regular expression finding the terms in text the way a person would read
// a match: a phrase as its words in order with any separators between them,
// a word at the start of a word (so "fail" marks "failed" as the stemming
// search does). Null when there is nothing to mark.
export function matcher(termList) {
  const alternatives = [];
  for (const term of termList) {
    const words = term.split(/[^\p{L}\p{N}]+/u).filter(Boolean);
    if (!words.length) continue;
    alternatives.push(words.map(escape).join("[^\\p{L}\\p{N}]+"));
  }
  if (!alternatives.length) return null;
  alternatives.sort((a, b) => b.length - a.length);
  return new RegExp(`(?<![\\p{L}\\p{N}])(?:${alternatives.join("|")})`, "giu");
}

// [text, isMatch] pieces of `text`.
export function pieces(text, regex) {
  if (!regex || !text) return [[text ?? "", false]];
  const out = [];
  let last = 0;
  for (const found of text.matchAll(regex)) {
    if (!found[0]) continue;
    if (found.index > last) out.push([text.slice(last, found.index), false]);
    out.push([found[0], true]);
    last = found.index + found[0].length;
  }
  if (last < text.length) out.push([text.slice(last), false]);
  return out;
}
