// Progressive enhancement of the settings filter: rows hide as you type.
// Without this script the filter still works through the server (?q=).
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const input = document.getElementById("q");
  const rows = document.querySelectorAll("tr[data-search]");
  if (!input || rows.length === 0) {
    return;
  }
  input.addEventListener("input", () => {
    const needle = input.value.trim().toLowerCase();
    for (const row of rows) {
      row.hidden = needle !== "" && !row.dataset.search.includes(needle);
    }
  });
});
