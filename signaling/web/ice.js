// STUN and TURN servers for the RTCPeerConnection, with the short-lived TURN credentials the
// server issues (GET /v1/classes/{class_id}/visio/ice-servers). TURN carries a call through
// networks that allow only TLS on 443. Without it the call still tries UDP and ICE-TCP to the
// SFU, so any failure here gives [] and never stops the call.

const FETCH_TIMEOUT_MS = 5000;

/**
 * The `iceServers` of `new RTCPeerConnection({ iceServers })` for this class: `{urls, username,
 * credential}` objects, or [] when the server has none, refuses, or cannot be reached.
 */
export async function fetchIceServers(classId, token) {
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), FETCH_TIMEOUT_MS);
  try {
    // The token goes in a header, never in the URL.
    const response = await fetch(`/v1/classes/${encodeURIComponent(classId)}/visio/ice-servers`, {
      headers: { Authorization: `Bearer ${token}` },
      cache: 'no-store',
      credentials: 'omit',
      signal: controller.signal,
    });
    if (!response.ok) return [];
    const body = await response.json();
    return usableServers(body && body.ice_servers);
  } catch (_) {
    return [];
  } finally {
    clearTimeout(timer);
  }
}

/** Keeps the well-formed entries that this browser accepts, in RTCIceServer's shape. */
export function usableServers(servers) {
  if (!Array.isArray(servers)) return [];
  const usable = [];
  for (const server of servers) {
    if (!server || !Array.isArray(server.urls) || server.urls.length === 0) continue;
    if (!server.urls.every((url) => typeof url === 'string')) continue;
    const entry = { urls: server.urls.slice() };
    if (typeof server.username === 'string') entry.username = server.username;
    if (typeof server.credential === 'string') entry.credential = server.credential;
    if (accepted(entry)) usable.push(entry);
  }
  return usable;
}

// One URL the browser refuses makes `new RTCPeerConnection` throw, which would stop the call:
// such an entry is dropped here instead. Nothing is gathered before an offer, so this costs no
// network traffic.
function accepted(server) {
  if (typeof RTCPeerConnection !== 'function') return true;
  try {
    new RTCPeerConnection({ iceServers: [server] }).close();
    return true;
  } catch (_) {
    return false;
  }
}
