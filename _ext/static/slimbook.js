// SlimCaching book (added to every page by _ext/slimbook.py): a figure too small to read
// on a phone opens full size in a new tab when tapped.
document.addEventListener("click", function (ev) {
  var img = ev.target;
  if (!img || img.tagName !== "IMG" || img.closest("a")) return;
  if (!img.closest(".cell_output, figure, .slimlib-explorer")) return;
  if (img.naturalWidth <= img.clientWidth + 1) return;       // already shown at full size
  window.open(img.currentSrc || img.src, "_blank", "noopener");
});
