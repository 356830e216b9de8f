/*
 * A campaign's admin page: the progress section follows the campaign without reloading (it polls
 * progress.json every 2 seconds while the campaign is approved, running or paused, and stops after the
 * update that says it is completed or cancelled), the Pause / Resume / Cancel forms that fit the new
 * status are shown, and the template parameters' help lists the values the chosen template needs.
 * Plain JavaScript, no build step; without it the page shows the numbers as of its loading.
 */
(function () {
  "use strict";

  var POLL_MS = 2000;

  function followProgress(section) {
    var url = section.getAttribute("data-progress-url");
    if (!url || section.getAttribute("data-live") !== "true") return;
    var bar = document.getElementById("campaign-progress");
    var percent = document.getElementById("campaign-percent");
    var status = document.getElementById("campaign-status");
    var note = document.getElementById("campaign-live-note");

    function show(data) {
      bar.value = data.percent;
      bar.textContent = data.percent + "%";
      percent.textContent = data.percent;
      status.textContent = data.status_display;
      status.setAttribute("data-status", data.status);
      document.querySelectorAll("#campaign-live [data-count], #campaign-totals [data-count]").forEach(function (cell) {
        var value = data[cell.getAttribute("data-count")];
        if (value !== undefined) cell.textContent = value;
      });
      section.querySelectorAll("form[data-statuses]").forEach(function (form) {
        form.hidden = form.getAttribute("data-statuses").split(" ").indexOf(data.status) === -1;
      });
    }

    function poll() {
      fetch(url, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } })
        .then(function (response) {
          if (!response.ok) throw new Error("HTTP " + response.status);
          return response.json();
        })
        .then(function (data) {
          show(data);
          if (data.live) {
            window.setTimeout(poll, POLL_MS);
          } else {
            section.setAttribute("data-live", "false");
            if (note) note.textContent = "Final numbers (Meta may still report late read receipts).";
          }
        })
        .catch(function () {
          // A dropped connection or a restarting server: try again at the next tick.
          window.setTimeout(poll, POLL_MS);
        });
    }

    window.setTimeout(poll, POLL_MS);
  }

  function followTemplateSlots() {
    var help = document.getElementById("campaign-template-slots");
    var select = document.getElementById("id_template");
    if (!help || !select) return;
    var url = help.getAttribute("data-url");

    function update() {
      if (!select.value) {
        help.textContent = "Choose a template to see the values it needs.";
        return;
      }
      fetch(url + "?template=" + encodeURIComponent(select.value), { credentials: "same-origin" })
        .then(function (response) { return response.ok ? response.json() : null; })
        .then(function (data) { if (data) help.textContent = data.text; })
        .catch(function () {});
    }

    // The autocomplete widget (select2) announces changes through jQuery only; a jQuery handler also
    // hears the browser's own change events.
    if (window.django && window.django.jQuery) window.django.jQuery(select).on("change", update);
    else select.addEventListener("change", update);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var section = document.getElementById("campaign-live");
    if (section) followProgress(section);
    followTemplateSlots();
  });
})();
