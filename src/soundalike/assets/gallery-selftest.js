// Inert unless the page is opened with ?selftest=1: loads every player's metadata and every image, then
// writes what it found into a pre element with the id "selftest", for a headless browser's --dump-dom
// (tests/test_gallery.py). This comment must not spell that element's tag: the test searches the page for it.
(function () {
  if (!/[?&]selftest=1/.test(location.search)) return;
  document.querySelectorAll("details").forEach(function (d) { d.open = true; });
  function settle(el, ok) {
    return new Promise(function (done) {
      el.addEventListener(ok, done, {once: true});
      el.addEventListener("error", done, {once: true});
    });
  }
  var audios = Array.from(document.querySelectorAll("audio"));
  var images = Array.from(document.querySelectorAll("img"));
  var waits = audios.map(function (a) {
    var p = settle(a, "loadedmetadata");
    a.preload = "metadata";
    a.load();
    return p;
  }).concat(images.map(function (img) {
    img.loading = "eager";
    return img.complete ? Promise.resolve() : settle(img, "load");
  }));
  Promise.all(waits).then(function () {
    var out = document.createElement("pre");
    out.id = "selftest";
    out.textContent = JSON.stringify({
      audio: audios.map(function (a) { return {src: a.getAttribute("src"), duration: a.duration || 0}; }),
      images: images.map(function (i) { return {src: i.getAttribute("src"), width: i.naturalWidth}; })
    });
    document.body.appendChild(out);
  });
})();
