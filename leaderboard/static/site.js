// oodbench leaderboard: sortable, filterable tables, plot, summary and heatmap selection, the FPR95 convention
// switch. No dependencies, no network.
(function () {
  "use strict";

  function cellValue(row, index) {
    var cell = row.cells[index];
    var raw = cell ? cell.getAttribute("data-value") : "";
    return raw === null ? cell.textContent.trim() : raw;
  }

  function compare(a, b, numeric) {
    if (a === "" && b === "") return 0;
    if (a === "") return 1; // missing values sort last in both directions
    if (b === "") return -1;
    if (numeric) return parseFloat(a) - parseFloat(b);
    return a.localeCompare(b);
  }

  function makeSortable(table) {
    var headers = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(headers, function (th, index) {
      if (!th.classList.contains("sort")) return;
      th.setAttribute("tabindex", "0");
      var sort = function () {
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(headers, function (h) { h.removeAttribute("aria-sort"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var numeric = th.classList.contains("num");
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (r1, r2) {
          var a = cellValue(r1, index), b = cellValue(r2, index);
          if (a === "" || b === "") return compare(a, b, numeric);
          var c = compare(a, b, numeric);
          return ascending ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      };
      th.addEventListener("click", sort);
      th.addEventListener("keydown", function (ev) { if (ev.key === "Enter") sort(); });
    });
  }

  function setupFilters() {
    var selects = document.querySelectorAll("select[data-filter]");
    var table = document.getElementById("entries");
    if (!table || !selects.length) return;
    var apply = function () {
      var shown = 0;
      Array.prototype.forEach.call(table.tBodies[0].rows, function (row) {
        var ok = Array.prototype.every.call(selects, function (s) {
          return s.value === "" || row.getAttribute("data-" + s.getAttribute("data-filter")) === s.value;
        });
        row.hidden = !ok;
        if (ok) shown += 1;
      });
      var count = document.getElementById("shown-count");
      if (count) count.textContent = String(shown);
    };
    Array.prototype.forEach.call(selects, function (s) { s.addEventListener("change", apply); });
    apply();
  }

  function setupPlots() {
    var selects = document.querySelectorAll("select[data-plot]");
    if (!selects.length) return;
    var apply = function () {
      Array.prototype.forEach.call(document.querySelectorAll("figure.plotset"), function (fig) {
        fig.hidden = !Array.prototype.every.call(selects, function (s) {
          return fig.getAttribute("data-" + s.getAttribute("data-plot")) === s.value;
        });
      });
    };
    Array.prototype.forEach.call(selects, function (s) { s.addEventListener("change", apply); });
    apply();
  }

  // FPR95 convention: the body's data-convention shows one convention's columns and charts (CSS hides the other)
  function setupConvention() {
    var radios = document.querySelectorAll('input[name="convention"]');
    if (!radios.length) return;
    var apply = function () {
      var chosen = document.querySelector('input[name="convention"]:checked');
      document.body.setAttribute("data-convention", chosen ? chosen.value : "id");
    };
    Array.prototype.forEach.call(radios, function (r) { r.addEventListener("change", apply); });
    apply();
  }

  // Show the elements whose data-<key> equal every control's value (an empty value matches all).
  function linkControls(attribute, selector) {
    var selects = document.querySelectorAll("select[" + attribute + "]");
    if (!selects.length) return;
    var apply = function () {
      Array.prototype.forEach.call(document.querySelectorAll(selector), function (el) {
        el.hidden = !Array.prototype.every.call(selects, function (s) {
          return s.value === "" || el.getAttribute("data-" + s.getAttribute(attribute)) === s.value;
        });
      });
    };
    Array.prototype.forEach.call(selects, function (s) { s.addEventListener("change", apply); });
    apply();
  }

  function setupEntryScores() {
    var select = document.querySelector("select[data-entry-score]");
    if (!select) return;
    var apply = function () {
      Array.prototype.forEach.call(document.querySelectorAll("section.score-block"), function (b) {
        b.hidden = b.getAttribute("data-score-index") !== select.value;
      });
    };
    select.addEventListener("change", apply);
    apply();
  }

  Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), makeSortable);
  setupFilters();
  setupPlots();
  setupConvention();
  linkControls("data-summary", "tbody.summary-group");
  linkControls("data-heatmap", "figure.heatmap");
  setupEntryScores();
})();
