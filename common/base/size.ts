// The one size parser: `4096`, `64K`, `64M`, `1G` (binary units; `Ki`, `KiB`, `KB` read the same), as
// `--max-output`, `--max-line-bytes` and `--rlimit as=2G` take them.

const UNITS: Record<string, number> = { '': 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 };

// Bytes, or undefined when `text` is not a size (the caller words the error for its option).
export function parseSize(text: string): number | undefined {
  const match = /^(\d+)(?:([KMG])i?B?)?$/i.exec(text.trim());
  if (!match) return undefined;
  const bytes = Number(match[1]) * UNITS[(match[2] ?? '').toUpperCase()]!;
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}
