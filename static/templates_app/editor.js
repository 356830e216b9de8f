/*
 * Message template editor: a live WhatsApp-style preview of the template being written, one sample
 * input per body variable, buttons that show only the inputs their type needs, and character counters.
 * Plain JavaScript, no build step. The form works without it (the server validates everything).
 */
(function () {
  "use strict";

  var VAR_RE = /\{\{\s*([^{}]*?)\s*\}\}/g;
  var LIMITS = { id_header_text: 60, id_body_text: 1024, id_footer_text: 60 };
  var BUTTON_TEXT_MAX = 25;
  var ICONS = {
    URL: '<path d="M14 3h7v7h-2V6.4l-9.3 9.3-1.4-1.4L17.6 5H14V3zM5 5h6v2H5v12h12v-6h2v6a2 2 0 0 1-2 2H5a2 2 0 0 1-2-2V7a2 2 0 0 1 2-2z"/>',
    PHONE_NUMBER: '<path d="M6.6 10.8a15.1 15.1 0 0 0 6.6 6.6l2.2-2.2a1 1 0 0 1 1-.25 11.4 11.4 0 0 0 3.6.57 1 1 0 0 1 1 1V20a1 1 0 0 1-1 1A17 17 0 0 1 3 4a1 1 0 0 1 1-1h3.5a1 1 0 0 1 1 1c0 1.25.2 2.45.57 3.57a1 1 0 0 1-.25 1z"/>',
    QUICK_REPLY: '<path d="M10 9V5l-7 7 7 7v-4.1c5 0 8.5 1.6 11 5.1-1-5-4-10-11-11z"/>',
    COPY_CODE: '<path d="M16 1H4a2 2 0 0 0-2 2v14h2V3h12V1zm3 4H8a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h11a2 2 0 0 0 2-2V7a2 2 0 0 0-2-2zm0 16H8V7h11v14z"/>',
    OTP: '<path d="M16 1H4a2 2 0 0 0-2 2v14h2V3h12V1zm3 4H8a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h11a2 2 0 0 0 2-2V7a2 2 0 0 0-2-2zm0 16H8V7h11v14z"/>',
    LIST: '<path d="M3 13h2v-2H3v2zm0 4h2v-2H3v2zm0-8h2V7H3v2zm4 4h14v-2H7v2zm0 4h14v-2H7v2zM7 7v2h14V7H7z"/>',
    IMAGE: '<path d="M21 19V5a2 2 0 0 0-2-2H5a2 2 0 0 0-2 2v14a2 2 0 0 0 2 2h14a2 2 0 0 0 2-2zM8.5 13.5l2.5 3 3.5-4.5 4.5 6H5l3.5-4.5z"/>',
    VIDEO: '<path d="M17 10.5V7a1 1 0 0 0-1-1H4a1 1 0 0 0-1 1v10a1 1 0 0 0 1 1h12a1 1 0 0 0 1-1v-3.5l4 4v-11l-4 4z"/>',
    DOCUMENT: '<path d="M14 2H6a2 2 0 0 0-2 2v16a2 2 0 0 0 2 2h12a2 2 0 0 0 2-2V8l-6-6zm4 18H6V4h7v5h5v11z"/>',
    LOCATION: '<path d="M12 2a7 7 0 0 0-7 7c0 5.25 7 13 7 13s7-7.75 7-13a7 7 0 0 0-7-7zm0 9.5A2.5 2.5 0 1 1 12 6.5a2.5 2.5 0 0 1 0 5z"/>',
  };
  var MEDIA_LABELS = { IMAGE: "Image", VIDEO: "Video", DOCUMENT: "Document", LOCATION: "Location" };

  function byId(id) {
    return document.getElementById(id);
  }

  function escapeHtml(text) {
    return String(text == null ? "" : text)
      .replace(/&/g, "&amp;")
      .replace(/</g, "&lt;")
      .replace(/>/g, "&gt;")
      .replace(/"/g, "&quot;")
      .replace(/'/g, "&#39;");
  }

  function icon(kind, size) {
    size = size || 16;
    return (
      '<svg class="wa-icon" viewBox="0 0 24 24" width="' + size + '" height="' + size + '" aria-hidden="true">' +
      (ICONS[kind] || "") +
      "</svg>"
    );
  }

  function variables(text) {
    var seen = [];
    String(text || "").replace(VAR_RE, function (_, name) {
      if (seen.indexOf(name) === -1) seen.push(name);
      return "";
    });
    return seen;
  }

  /* WhatsApp's markup (*bold*, _italic_, ~strike~, ```mono```), with variables shown as their samples. */
  function formatted(text, samples) {
    var values = [];
    var marked = String(text || "").replace(VAR_RE, function (_, name) {
      values.push(name);
      return "\u0000" + (values.length - 1) + "\u0000";
    });
    var html = escapeHtml(marked)
      .replace(/```([\s\S]+?)```/g, '<code class="wa-mono">$1</code>')
      .replace(/\*([^*\n]+)\*/g, "<strong>$1</strong>")
      .replace(/(^|[^\w])_([^_\n]+)_(?!\w)/g, "$1<em>$2</em>")
      .replace(/~([^~\n]+)~/g, "<del>$1</del>");
    html = html.replace(/\u0000(\d+)\u0000/g, function (_, index) {
      var name = values[Number(index)];
      var value = samples && samples[name];
      if (value) {
        return '<span class="wa-sample" title="{{' + escapeHtml(name) + '}}">' + escapeHtml(value) + "</span>";
      }
      return '<span class="wa-var" title="No sample yet">{{' + escapeHtml(name) + "}}</span>";
    });
    return html.replace(/\n/g, "<br>");
  }

  /* --- Reading the template: from the form while editing, from the page's data when read-only. --- */

  function value(id) {
    var element = byId(id);
    return element ? element.value : "";
  }

  function readSamples() {
    var samples = {};
    document.querySelectorAll("#id_body_samples [data-sample-var]").forEach(function (input) {
      samples[input.getAttribute("data-sample-var")] = input.value.trim();
    });
    return samples;
  }

  function buttonRows() {
    return Array.prototype.slice.call(document.querySelectorAll("#id_buttons .tpl-button-row"));
  }

  function rowField(row, name) {
    return row.querySelector('[data-button-field="' + name + '"]');
  }

  function readButtons() {
    return buttonRows()
      .map(function (row) {
        return {
          type: rowField(row, "type").value,
          text: rowField(row, "text").value.trim(),
          url: rowField(row, "url").value.trim(),
          phone_number: rowField(row, "phone_number").value.trim(),
          example: rowField(row, "example").value.trim(),
        };
      })
      .filter(function (button) {
        return button.type || button.text;
      });
  }

  function readModel(editable) {
    if (!editable) {
      var data = byId("tpl-preview-data");
      return data ? JSON.parse(data.textContent) : null;
    }
    return {
      header: { format: value("id_header_format"), text: value("id_header_text"), sample: value("id_header_sample").trim() },
      body: { text: value("id_body_text"), samples: readSamples() },
      footer: value("id_footer_text"),
      buttons: readButtons(),
    };
  }

  /* --- The bubble ------------------------------------------------------------------------------ */

  function headerHtml(header) {
    var format = (header && header.format) || "";
    if (!format) return "";
    if (format === "TEXT") {
      if (!header.text.trim()) return "";
      var samples = {};
      var names = variables(header.text);
      if (names.length) samples[names[0]] = header.sample;
      return '<div class="wa-header">' + formatted(header.text, samples) + "</div>";
    }
    var caption = MEDIA_LABELS[format] || format;
    var sample = header.sample && format !== "LOCATION" ? '<span class="wa-media-sample">' + escapeHtml(header.sample) + "</span>" : "";
    return (
      '<div class="wa-media wa-media--' + format.toLowerCase() + '">' + icon(format, 40) +
      '<span class="wa-media-label">' + escapeHtml(caption) + "</span>" + sample + "</div>"
    );
  }

  function buttonHtml(button) {
    var label = button.text || (button.type === "COPY_CODE" ? "Copy offer code" : button.type === "OTP" ? "Copy code" : "");
    return '<div class="wa-button" data-type="' + escapeHtml(button.type) + '">' + icon(button.type) + "<span>" + escapeHtml(label || "Button") + "</span></div>";
  }

  function now() {
    var date = new Date();
    return ("0" + date.getHours()).slice(-2) + ":" + ("0" + date.getMinutes()).slice(-2);
  }

  function render(model) {
    var chat = byId("tpl-preview");
    if (!chat || !model) return;
    var body = model.body || { text: "", samples: {} };
    var bodyHtml = body.text && body.text.trim()
      ? formatted(body.text, body.samples || {})
      : '<span class="wa-placeholder">Your message appears here as you write the body.</span>';
    var html = '<div class="wa-card">';
    html += '<div class="wa-bubble' + ((model.buttons || []).length ? " wa-bubble--with-buttons" : "") + '">';
    html += headerHtml(model.header);
    html += '<div class="wa-body">' + bodyHtml + "</div>";
    if (model.footer && model.footer.trim()) html += '<div class="wa-footer">' + escapeHtml(model.footer) + "</div>";
    html += '<span class="wa-time">' + now() + "</span></div>";
    var buttons = model.buttons || [];
    if (buttons.length) {
      // WhatsApp shows up to three buttons; with more, two and a "See all options" list.
      var shown = buttons.length > 3 ? buttons.slice(0, 2) : buttons;
      html += '<div class="wa-buttons">' + shown.map(buttonHtml).join("");
      if (buttons.length > 3) html += buttonHtml({ type: "LIST", text: "See all options" });
      html += "</div>";
    }
    html += "</div>";
    chat.innerHTML = html;
  }

  /* --- Editing helpers ------------------------------------------------------------------------- */

  var rememberedSamples = {};

  function syncSampleInputs() {
    var container = byId("id_body_samples");
    if (!container) return;
    var names = variables(value("id_body_text"));
    var current = readSamples();
    Object.keys(current).forEach(function (name) {
      rememberedSamples[name] = current[name];
    });
    var existing = Object.keys(current);
    if (existing.join("\u0001") === names.join("\u0001")) return; // unchanged: keep focus and caret
    var fieldName = container.getAttribute("data-name");
    if (!names.length) {
      container.innerHTML =
        '<p class="tpl-samples-empty">The body has no variables yet. Add one, e.g. {{1}}, and give it a sample here.</p>';
      return;
    }
    container.innerHTML = names
      .map(function (name) {
        return (
          '<label class="tpl-sample-row"><span class="tpl-sample-var">{{' + escapeHtml(name) + "}}</span>" +
          '<input type="text" class="vTextField" name="' + escapeHtml(fieldName + "__" + name) + '" value="' +
          escapeHtml(rememberedSamples[name] || "") + '" data-sample-var="' + escapeHtml(name) +
          '" placeholder="e.g. a real customer\'s value"></label>'
        );
      })
      .join("");
  }

  function formRow(field) {
    return document.querySelector(".form-row.field-" + field);
  }

  function setVisible(element, visible) {
    if (!element) return;
    var hasErrors = element.querySelector(".errorlist");
    element.hidden = !visible && !hasErrors;
  }

  function syncHeaderFields() {
    var format = value("id_header_format");
    var textRow = formRow("header_text");
    var sampleRow = formRow("header_sample");
    setVisible(textRow, format === "TEXT");
    var needsSample = (format === "TEXT" && variables(value("id_header_text")).length > 0) || ["IMAGE", "VIDEO", "DOCUMENT"].indexOf(format) !== -1;
    setVisible(sampleRow, needsSample);
    var label = document.querySelector('label[for="id_header_sample"]');
    if (label) label.textContent = format === "TEXT" ? "Header sample:" : "Sample media:";
  }

  function rowIsEmpty(row) {
    return ["type", "text", "url", "phone_number", "example"].every(function (name) {
      return !rowField(row, name).value.trim();
    });
  }

  function syncButtonRows() {
    var rows = buttonRows();
    if (!rows.length) return;
    rows.forEach(function (row) {
      var type = rowField(row, "type").value;
      var url = rowField(row, "url").value;
      var example = rowField(row, "example");
      var needsUrl = type === "URL";
      var needsPhone = type === "PHONE_NUMBER";
      var needsExample = (needsUrl && variables(url).length > 0) || type === "COPY_CODE";
      rowField(row, "url").hidden = !needsUrl;
      rowField(row, "phone_number").hidden = !needsPhone;
      example.hidden = !needsExample;
      example.placeholder = type === "COPY_CODE" ? "Sample offer code, e.g. SUMMER25" : "Sample: the full URL with the variable filled in";
      var details = row.querySelector(".tpl-button-details");
      if (details) details.hidden = !(needsUrl || needsPhone || needsExample);
      if (row.dataset.revealed !== "1" && rowIsEmpty(row) && !row.querySelector(".errorlist")) row.hidden = true;
    });
    var visible = rows.filter(function (row) {
      return !row.hidden;
    });
    var add = byId("tpl-add-button");
    if (add) {
      add.hidden = visible.length >= rows.length;
      add.textContent = visible.length ? "+ Add another button" : "+ Add a button";
    }
  }

  function installButtonControls() {
    var container = byId("id_buttons");
    if (!container) return;
    buttonRows().forEach(function (row) {
      if (!rowIsEmpty(row)) row.dataset.revealed = "1";
      var remove = document.createElement("button");
      remove.type = "button";
      remove.className = "tpl-remove-button";
      remove.title = "Remove this button";
      remove.setAttribute("aria-label", "Remove button " + (Number(row.dataset.index) + 1));
      remove.textContent = "×";
      remove.addEventListener("click", function () {
        ["type", "text", "url", "phone_number", "example"].forEach(function (name) {
          rowField(row, name).value = "";
        });
        row.dataset.revealed = "0";
        update();
      });
      row.querySelector(".tpl-button-line").appendChild(remove);
    });
    var add = document.createElement("button");
    add.type = "button";
    add.id = "tpl-add-button";
    add.className = "button tpl-add-button";
    add.textContent = "+ Add a button";
    add.addEventListener("click", function () {
      var next = buttonRows().filter(function (row) {
        return row.hidden;
      })[0];
      if (!next) return;
      next.dataset.revealed = "1";
      next.hidden = false;
      update();
      rowField(next, "type").focus();
    });
    container.appendChild(add);
  }

  function installCounters() {
    var targets = Object.keys(LIMITS).map(function (id) {
      return [byId(id), LIMITS[id]];
    });
    document.querySelectorAll('#id_buttons [data-button-field="text"]').forEach(function (input) {
      targets.push([input, BUTTON_TEXT_MAX]);
    });
    targets.forEach(function (pair) {
      var input = pair[0];
      if (!input) return;
      var counter = document.createElement("span");
      counter.className = "tpl-counter";
      counter.setAttribute("aria-live", "polite");
      input.insertAdjacentElement("afterend", counter);
      var refresh = function () {
        counter.textContent = input.value.length + "/" + pair[1];
        counter.classList.toggle("tpl-counter--over", input.value.length > pair[1]);
      };
      input.addEventListener("input", refresh);
      refresh();
    });
  }

  function installAddVariable() {
    var body = byId("id_body_text");
    if (!body) return;
    var add = document.createElement("button");
    add.type = "button";
    add.className = "button tpl-add-variable";
    add.textContent = "+ Add variable";
    add.addEventListener("click", function () {
      var named = value("id_parameter_format") === "NAMED";
      var numbers = variables(body.value)
        .map(Number)
        .filter(function (n) {
          return n > 0;
        });
      var name = named ? "variable_name" : String(numbers.length ? Math.max.apply(null, numbers) + 1 : 1);
      var start = body.selectionStart != null ? body.selectionStart : body.value.length;
      var end = body.selectionEnd != null ? body.selectionEnd : start;
      var token = "{{" + name + "}}";
      body.value = body.value.slice(0, start) + token + body.value.slice(end);
      body.focus();
      if (named) body.setSelectionRange(start + 2, start + 2 + name.length);
      else body.setSelectionRange(start + token.length, start + token.length);
      body.dispatchEvent(new Event("input", { bubbles: true }));
    });
    // Beside the textarea: its counter, and the button under it.
    var tools = document.createElement("div");
    tools.className = "tpl-field-tools";
    body.insertAdjacentElement("afterend", tools);
    var counter = tools.nextElementSibling;
    if (counter && counter.classList.contains("tpl-counter")) tools.appendChild(counter);
    tools.appendChild(add);
  }

  function formSnapshot(form) {
    var pairs = [];
    new FormData(form).forEach(function (v, k) {
      if (k !== "csrfmiddlewaretoken") pairs.push(k + "=" + v);
    });
    return pairs.sort().join("&");
  }

  function installUnsavedGuard(form) {
    var initial = formSnapshot(form);
    document.querySelectorAll("form[data-needs-saved-form]").forEach(function (workflowForm) {
      workflowForm.addEventListener("submit", function (event) {
        if (formSnapshot(form) !== initial && !window.confirm("This template has unsaved changes, which would not be sent. Send the saved version anyway?")) {
          event.preventDefault();
        }
      });
    });
  }

  var editable = false;

  function update() {
    if (editable) {
      syncSampleInputs();
      syncHeaderFields();
      syncButtonRows();
    }
    render(readModel(editable));
  }

  function start() {
    if (!byId("tpl-preview")) return; // the changelist loads this file too
    var form = byId("messagetemplate_form");
    editable = Boolean(byId("id_body_text"));
    if (editable) {
      installButtonControls();
      installCounters();
      installAddVariable();
      form.addEventListener("input", update);
      form.addEventListener("change", update);
      installUnsavedGuard(form);
    }
    update();
    document.documentElement.classList.add("tpl-editor-ready");
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
