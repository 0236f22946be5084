// Inferia dashboard: small behaviours that need a script. Pages work without it.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("[data-copy]").forEach(function (button) {
    button.hidden = false;
    button.addEventListener("click", function () {
      var source = document.getElementById(button.getAttribute("data-copy"));
      var text = source.value !== undefined ? source.value : source.textContent;
      var done = function () { button.textContent = "Copied"; };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(done, function () { source.select(); document.execCommand("copy"); done(); });
      } else {
        source.select(); document.execCommand("copy"); done();
      }
    });
  });
  document.querySelectorAll("[data-switch-org]").forEach(function (select) {
    select.addEventListener("change", function () { if (select.value) { window.location = select.value; } });
  });
  // Destructive buttons (data-confirm) ask in a <dialog>; confirmed, the form is sent with
  // the confirmation flag. Without this script the server shows a confirmation page instead.
  var dialog = document.getElementById("confirm-dialog");
  if (dialog && typeof dialog.showModal === "function") {
    document.addEventListener("submit", function (event) {
      var button = event.submitter;
      var form = event.target;
      if (!button || !button.hasAttribute("data-confirm") || form.querySelector("input[name=confirm]")) { return; }
      event.preventDefault();
      dialog.querySelector("[data-confirm-text]").textContent = button.getAttribute("data-confirm");
      dialog.querySelector("[data-confirm-ok]").textContent = button.textContent.trim() || "Yes, do it";
      dialog.returnValue = "";
      dialog.onclose = function () {
        if (dialog.returnValue !== "ok") { return; }
        var flag = document.createElement("input");
        flag.type = "hidden"; flag.name = "confirm"; flag.value = "yes";
        form.appendChild(flag);
        form.requestSubmit(button);
      };
      dialog.showModal();
    });
  }
});
