// Bounds on what a peer's JSON may cost us. JSON.parse takes any depth, but everything recursive after it
// (JSON.stringify, util.inspect, structuredClone) overflows the stack on a value nested ~10,000 deep, and
// that throw used to escape from the middle of a read and lose the lines after it (issue 14). Messages of
// this protocol nest a few levels; anything deeper than MAX_JSON_DEPTH is refused where it is parsed, and
// what we log or quote of a peer's value goes through describeValue, which never throws.

/** Deepest nesting of arrays and objects accepted in a message (the protocol's own go 4 levels deep). */
export const MAX_JSON_DEPTH = 64;

// True when `value` nests arrays/objects deeper than `max`. Iterative: a deep value cannot overflow it.
export function exceedsDepth(value: unknown, max: number = MAX_JSON_DEPTH): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const stack: Array<{ value: object; depth: number }> = [{ value, depth: 1 }];
  while (stack.length > 0) {
    const { value: current, depth } = stack.pop()!;
    if (depth > max) return true;
    const children = Array.isArray(current) ? current : Object.values(current);
    for (const child of children) {
      if (typeof child === 'object' && child !== null) stack.push({ value: child, depth: depth + 1 });
    }
  }
  return false;
}

// A short text for a log line or an error message quoting a peer's value; never throws.
export function describeValue(value: unknown, max = 60): string {
  let text: string;
  try {
    text = exceedsDepth(value, 8) ? `(a value nested deeper than 8 levels)` : (JSON.stringify(value) ?? String(value));
  } catch {
    text = `(an unprintable ${typeof value})`;
  }
  return text.length <= max ? text : `${text.slice(0, max)}... (${text.length - max} more characters)`;
}
