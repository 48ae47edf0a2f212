// snapshotd's guard in front of the ReplayWeb.page service worker, which it imports below.
// It runs on the replay host, a host name of snapshotd's own for replay, where the console is
// not served. The viewer's app at /replay/ opens whatever archive its `source` parameter names
// and runs that archive's pages on this origin, beside the other archives replayed here: a link
// naming an archive on another site would run that site's scripts here. So the app opens only
// archives this origin serves. The same script also runs as the viewer's dedicated worker, where
// there is nothing to guard.
"use strict";

function opensForeignArchive(request, scope) {
  if (request.mode !== "navigate") {
    return false;
  }
  const url = new URL(request.url);
  if (url.pathname !== scope.pathname && url.pathname !== scope.pathname + "index.html") {
    return false;
  }
  const named = url.searchParams.get("source");
  if (!named) {
    return true;
  }
  try {
    return new URL(named, url).origin !== self.location.origin;
  } catch (error) {
    return true;
  }
}

if (self.registration) {
  self.addEventListener("fetch", (event) => {
    if (!opensForeignArchive(event.request, new URL(self.registration.scope))) {
      return;
    }
    event.stopImmediatePropagation();
    event.respondWith(
      new Response("This viewer opens only the archives this server keeps.", {
        status: 403,
        headers: { "Content-Type": "text/plain; charset=utf-8" },
      }),
    );
  });
}

importScripts("viewer-sw.js");
