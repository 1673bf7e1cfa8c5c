// The reading room's page script: installed once into the Streamlit page (the frames of the app
// are same-origin) by viewer.html or keys.html, then kept for the life of the tab.
//
// 1. Rating keys. Streamlit drops button presses that reach the server while it is still
//    rerunning for the previous one, so each press waits in a queue and clicks its button only
//    after the rerun of the press before it has finished. A press is bound to the item on screen
//    when it was made: the frame of each item publishes its own button keys
//    (documentElement.dataset.readerKeys), the target is looked up at keydown, and a press whose
//    item is no longer the published one when its turn comes (the page moved on to another item)
//    is dropped with a notice.
// 2. Enter submits from anywhere. In the comment box Enter first commits the text (blur), then
//    submits; Shift+Enter is a newline and digits stay text.
// 3. A "connection lost" banner while the server does not answer its health check.
(function () {
  "use strict";
  const STATE = "data-test-script-state";
  const app = () => document.querySelector('[data-testid="stApp"]');
  const running = () => app()?.getAttribute(STATE) === "running";

  function banner(id, css) {
    let el = document.getElementById(id);
    if (!el) {
      el = document.createElement("div");
      el.id = id;
      el.setAttribute("role", "alert");
      el.style.cssText = "position:fixed;left:50%;transform:translateX(-50%);z-index:1000002;padding:8px 16px;" +
        "border-radius:6px;font:600 15px system-ui,sans-serif;box-shadow:0 2px 12px #000;display:none;" + css;
      document.body.appendChild(el);
    }
    return el;
  }

  let noticeTimer = null;
  function notify(text) {
    const el = banner("reader-key-notice", "bottom:16px;background:#5a4300;color:#fff;");
    el.textContent = text;
    el.style.display = "block";
    clearTimeout(noticeTimer);
    noticeTimer = setTimeout(() => { el.style.display = "none"; }, 5000);
  }

  // -- the key queue --------------------------------------------------------------------------
  const queue = [];
  let waiting = false, timer = null;
  function done() { waiting = false; clearTimeout(timer); pump(); }
  function wait(ms) {  // until the rerun this action started has finished (or it started none)
    waiting = true;
    timer = setTimeout(() => { if (!running()) done(); }, ms);
  }
  function pump() {
    if (waiting || running() || !queue.length) return;
    const action = queue.shift();
    if (action.commit) {  // a blur makes Streamlit commit the comment text (a rerun when it changed)
      action.commit.blur();
      if (app()?.hasAttribute(STATE)) return wait(400);
      return pump();
    }
    const button = document.querySelector(".st-key-" + action.key + " button");
    if (!button) {
      // Still one of the shown item's keys: the page is being drawn, try again shortly. Else the
      // item it was pressed for is gone: drop it.
      action.tries = (action.tries || 0) + 1;
      if (published().includes(action.key) && action.tries <= 50) {
        queue.unshift(action);
        waiting = true;
        timer = setTimeout(done, 100);
        return;
      }
      notify("Key ignored: it was pressed for an image that is no longer shown. Rate the image now on screen.");
      return pump();
    }
    if (button.disabled) return pump();
    button.click();
    if (!app()?.hasAttribute(STATE)) return pump();  // no run state to watch: send at once
    wait(1500);  // the click started no rerun
  }
  new MutationObserver((records) => {
    if (records.some((r) => r.oldValue === "running")) done();  // a rerun finished
    else pump();
  }).observe(document.body, { subtree: true, attributes: true, attributeOldValue: true, attributeFilter: [STATE] });

  function keys() { return JSON.parse(document.documentElement.dataset.readerKeys || "{}"); }
  function target(key) { return keys()[key]; }
  function published() { return Object.values(keys()); }
  window.readerKeysIdle = () => !waiting && !queue.length && !running();  // every press sent and answered
  window.readerKeyPress = (key) => {
    const found = target(key);
    if (!found) return false;
    queue.push({ key: found });
    pump();
    return true;
  };
  document.addEventListener("keydown", (e) => {
    if (e.repeat || e.ctrlKey || e.metaKey || e.altKey || e.isComposing) return;
    const t = e.target;
    if (t && t.tagName === "TEXTAREA" && t.closest('[class*="_comment_"]')) {
      if (e.key !== "Enter" || e.shiftKey || !target("Enter")) return;  // text, newlines
      e.preventDefault();
      queue.push({ commit: t });
      window.readerKeyPress("Enter");
      return;
    }
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName))) return;
    if (window.readerKeyPress(e.key)) e.preventDefault();
  });

  // -- connection watch -----------------------------------------------------------------------
  const HEALTH = new URL("_stcore/health", location.href.split("?")[0]).href;
  let failures = 0;
  async function check() {
    let ok = false;
    try {
      const answer = await fetch(HEALTH, { cache: "no-store", signal: AbortSignal.timeout(2500) });
      ok = answer.ok;
    } catch (err) { ok = false; }
    failures = ok ? 0 : failures + 1;
    const el = banner("connection-lost", "top:8px;background:#8b0000;color:#fff;");
    el.textContent = "Connection lost \u2014 your last acknowledged rating is saved. " +
      "Ratings made now are not saved; reload this page when the connection is back.";
    el.style.display = failures >= 2 ? "block" : "none";
  }
  setInterval(check, 1500);
})();
