// @ts-check
// Random ids for peers and pages (crypto.randomUUID needs a secure context: fall back).

/** @returns {string} */
export function randomId() {
  try {
    return crypto.randomUUID();
  } catch {
    return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
  }
}
