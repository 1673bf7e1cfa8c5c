// Runs inside an app frame (the viewer, or the keys frame of a page without an image): installs
// page.js into the Streamlit page once, publishes this page's rating keys and forwards presses
// made while the focus is in this frame.
(function () {
  "use strict";
  const FORWARD = __FORWARD__;  // key -> widget key of the button it clicks (this item's buttons only)
  try {
    const page = window.parent;
    page.document.documentElement.dataset.readerKeys = JSON.stringify(FORWARD);
    if (!page.document.getElementById("reader-page-script")) {
      const script = page.document.createElement("script");
      script.id = "reader-page-script";
      script.textContent = __PAGE_SCRIPT__;
      page.document.head.appendChild(script);
    }
    document.addEventListener("keydown", (e) => {
      if (e.repeat || e.ctrlKey || e.metaKey || e.altKey) return;
      if (page.readerKeyPress(e.key)) e.preventDefault();
    });
  } catch (err) { /* the page is not reachable (another origin): no rating keys */ }
})();
