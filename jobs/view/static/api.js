// The viewer's JSON API (same origin; the token, when one is needed, travels as a cookie).

export class ApiError extends Error {}

export async function get(path, params = {}, signal = undefined) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== null && v !== undefined && v !== "") query.set(k, String(v));
  }
  const url = query.size ? `${path}?${query}` : path;
  const response = await fetch(url, { signal, credentials: "same-origin" });
  const body = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new ApiError(body.error || `${response.status}`);
  return body;
}
