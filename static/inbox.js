// The inbox's "select all" box: shown only when scripts run; the list works without it.
(function () {
  "use strict";
  var all = document.getElementById("select-all");
  if (!all) {
    return;
  }
  var boxes = document.querySelectorAll('#bulk-form input[name="ids"]');
  all.hidden = false;
  all.addEventListener("change", function () {
    boxes.forEach(function (box) {
      box.checked = all.checked;
    });
  });
})();
