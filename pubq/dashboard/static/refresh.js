// Auto-refresh: while the box is ticked (remembered per browser), reload the page's main part every
// N seconds, unless the user is typing in a form. The pages work without this script.
(function () {
  var box = document.getElementById("autorefresh");
  var every = parseFloat(document.body.getAttribute("data-refresh") || "0");
  if (!box || !(every > 0)) { if (box) box.parentNode.style.display = "none"; return; }
  box.checked = localStorage.getItem("pubq-autorefresh") === "1";
  box.addEventListener("change", function () { localStorage.setItem("pubq-autorefresh", box.checked ? "1" : "0"); });
  setInterval(function () {
    if (!box.checked) return;
    var active = document.activeElement;
    if (active && (active.tagName === "INPUT" || active.tagName === "SELECT" || active.tagName === "TEXTAREA") && active !== box) return;
    fetch(location.href, { credentials: "same-origin" }).then(function (r) { return r.text(); }).then(function (html) {
      var doc = new DOMParser().parseFromString(html, "text/html");
      var fresh = doc.getElementById("main");
      if (fresh) document.getElementById("main").replaceWith(fresh);
    });
  }, every * 1000);
})();
