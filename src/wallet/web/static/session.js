// Signing in: the server's demo key in embedded demo mode, else an API key the person pastes,
// kept for this tab only (sessionStorage) until "Forget key". The demo key stays in memory.

import { request, setApiKey } from "./api.js";
import { byId } from "./dom.js";
import { renderMessage, renderProblem, setProblemHint } from "./messages.js";

const STORAGE_KEY = "wallet-demo-api-key";

// Calls `signedIn(assetsAnswer)` once a key works, `signedOut()` when the key is forgotten.
export async function startSession({ signedIn, signedOut }) {
  byId("sign-in-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const key = byId("api-key").value.trim();
    if (!key) {
      renderMessage(byId("sign-in-result"), "Paste an API key first.", "error");
      return;
    }
    renderMessage(byId("sign-in-result"), "Checking the key…", "pending");
    await tryKey(key, signedIn);
  });
  byId("forget-key").addEventListener("click", () => {
    sessionStorage.removeItem(STORAGE_KEY);
    setApiKey(null);
    signedOut();
    showSignIn("Signed out: this tab no longer holds an API key.");
    renderMessage(byId("sign-in-result"), "The key is forgotten.", "info");
  });

  const session = await request("GET", "/ui/session", { background: true });
  if (session.lost) {
    byId("session-status").textContent = "Could not reach the service. Is it running?";
    return;
  }
  if (session.ok && session.data?.api_key) {
    setApiKey(session.data.api_key);
    setProblemHint("unauthenticated", "The demo key changes at each server start: reload the page.");
    byId("session-status").textContent = "Signed in with this server's demo key (admin, made at its start).";
    await signedIn(null);
    return;
  }
  const stored = sessionStorage.getItem(STORAGE_KEY);
  if (stored !== null && (await tryKey(stored, signedIn))) return;
  showSignIn("This server has no demo key: sign in with an API key.");
}

async function tryKey(key, signedIn) {
  setApiKey(key);
  const assets = await request("GET", "/v1/assets");
  if (!assets.ok) {
    setApiKey(null);
    sessionStorage.removeItem(STORAGE_KEY);
    renderProblem(byId("sign-in-result"), assets);
    return false;
  }
  sessionStorage.setItem(STORAGE_KEY, key);
  byId("session-status").textContent = "Signed in with your API key (kept in this tab only).";
  byId("forget-key").hidden = false;
  await signedIn(assets);
  return true;
}

function showSignIn(status) {
  byId("session-status").textContent = status;
  byId("workspace").hidden = true;
  byId("forget-key").hidden = true;
  byId("sign-in").hidden = false;
  byId("api-key").value = "";
  byId("api-key").focus();
}
