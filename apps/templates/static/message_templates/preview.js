// Live preview on the template change form: re-renders with the sample params as the operator types.
"use strict";
window.addEventListener("load", function () {
  const box = document.getElementById("template-preview");
  if (!box) return;
  box.style.whiteSpace = "pre-wrap";
  const names = box.dataset.fields.split(",");
  const form = box.closest("form");
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]");
  let timer = null;

  function render(state) {
    if (state.error) {
      box.textContent = "⚠ " + state.error;
      return;
    }
    const lines = [(state.signed || "") + state.content];
    if (state.segments !== undefined) lines.push(state.segments + " segment(s), " + state.encoding);
    if (state.missing && state.missing.length) lines.push("missing sample params: " + state.missing.join(", "));
    box.textContent = lines.join("\n");
  }

  function refresh() {
    const body = new FormData();
    names.forEach(function (name) {
      const field = form.elements.namedItem(name);
      if (field) body.append(name, field.value);
    });
    fetch(box.dataset.url, { method: "POST", body: body, headers: { "X-CSRFToken": csrf ? csrf.value : "" } })
      .then(function (response) { return response.json(); })
      .then(render)
      .catch(function () { box.textContent = "⚠ preview unavailable"; });
  }

  names.forEach(function (name) {
    const field = form.elements.namedItem(name);
    if (!field) return;
    ["input", "change"].forEach(function (event) {
      field.addEventListener(event, function () {
        clearTimeout(timer);
        timer = setTimeout(refresh, 250);
      });
    });
  });
});
