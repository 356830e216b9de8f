/*
 * The admin's compose page: shows only the chosen kind's fields, a live WhatsApp-style preview of the
 * message being written (the template editor's bubble), character counters from the limits the server
 * enforces, template variables as inputs for the chosen template, and reply-button / list rows revealed
 * one at a time. Plain JavaScript, no build step; the form works without it (the server checks all).
 */
(function () {
  "use strict";

  var VAR_RE = /\{\{\s*([^{}]*?)\s*\}\}/g;
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
    AUDIO: '<path d="M12 14a3 3 0 0 0 3-3V5a3 3 0 0 0-6 0v6a3 3 0 0 0 3 3zm5-3a5 5 0 0 1-10 0H5a7 7 0 0 0 6 6.9V21h2v-3.1A7 7 0 0 0 19 11h-2z"/>',
    STICKER: '<path d="M12 2a10 10 0 1 0 10 10A10 10 0 0 0 12 2zm-3.5 6A1.5 1.5 0 1 1 7 9.5 1.5 1.5 0 0 1 8.5 8zm7 0A1.5 1.5 0 1 1 14 9.5 1.5 1.5 0 0 1 15.5 8zM12 17.5A5.5 5.5 0 0 1 6.9 14h10.2a5.5 5.5 0 0 1-5.1 3.5z"/>',
    LOCATION: '<path d="M12 2a7 7 0 0 0-7 7c0 5.25 7 13 7 13s7-7.75 7-13a7 7 0 0 0-7-7zm0 9.5A2.5 2.5 0 1 1 12 6.5a2.5 2.5 0 0 1 0 5z"/>',
  };
  var MEDIA_LABELS = { IMAGE: "Image", VIDEO: "Video", DOCUMENT: "Document", AUDIO: "Audio", STICKER: "Sticker", LOCATION: "Location" };

  var data = { senders: {}, templates: {}, mediaExtensions: {}, businessName: "" };
  var remembered = {}; // template variable values by input name, kept across template switches

  function byId(id) {
    return document.getElementById(id);
  }

  function value(name) {
    var element = byId("id_" + name);
    return element ? element.value : "";
  }

  function checked(name) {
    var element = byId("id_" + name);
    return Boolean(element && element.checked);
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

  /* WhatsApp's markup (*bold*, _italic_, ~strike~, ```mono```); {{variables}} show their values. */
  function formatted(text, values) {
    var names = [];
    var marked = String(text || "").replace(VAR_RE, function (_, name) {
      names.push(name);
      return "\u0000" + (names.length - 1) + "\u0000";
    });
    var html = escapeHtml(marked)
      .replace(/```([\s\S]+?)```/g, '<code class="wa-mono">$1</code>')
      .replace(/\*([^*\n]+)\*/g, "<strong>$1</strong>")
      .replace(/(^|[^\w])_([^_\n]+)_(?!\w)/g, "$1<em>$2</em>")
      .replace(/~([^~\n]+)~/g, "<del>$1</del>");
    html = html.replace(/\u0000(\d+)\u0000/g, function (_, index) {
      var name = names[Number(index)];
      var filled = values && values[name];
      if (filled) return '<span class="wa-sample" title="{{' + escapeHtml(name) + '}}">' + escapeHtml(filled) + "</span>";
      return '<span class="wa-var" title="Not filled in yet">{{' + escapeHtml(name) + "}}</span>";
    });
    return html.replace(/\n/g, "<br>");
  }

  function now() {
    var date = new Date();
    return ("0" + date.getHours()).slice(-2) + ":" + ("0" + date.getMinutes()).slice(-2);
  }

  function placeholder(text) {
    return '<span class="wa-placeholder">' + escapeHtml(text) + "</span>";
  }

  /* One received-message card: optional media block, header, body, footer, then buttons under it. */
  function card(parts) {
    var buttons = parts.buttons || [];
    var html = '<div class="wa-card' + (parts.className ? " " + parts.className : "") + '">';
    html += '<div class="wa-bubble' + (buttons.length ? " wa-bubble--with-buttons" : "") + '">';
    if (parts.media) html += parts.media;
    if (parts.header) html += '<div class="wa-header">' + parts.header + "</div>";
    html += '<div class="wa-body">' + (parts.body || "") + "</div>";
    if (parts.footer) html += '<div class="wa-footer">' + escapeHtml(parts.footer) + "</div>";
    html += '<span class="wa-time">' + now() + "</span></div>";
    if (buttons.length) {
      var shown = buttons.length > 3 ? buttons.slice(0, 2) : buttons;
      html += '<div class="wa-buttons">' + shown.map(buttonHtml).join("");
      if (buttons.length > 3) html += buttonHtml({ type: "LIST", text: "See all options" });
      html += "</div>";
    }
    return html + "</div>";
  }

  function buttonHtml(button) {
    return (
      '<div class="wa-button" data-type="' + escapeHtml(button.type) + '">' + icon(button.type) +
      "<span>" + escapeHtml(button.text || "Button") + "</span></div>"
    );
  }

  function mediaBlock(format, caption) {
    var sample = caption ? '<span class="wa-media-sample">' + escapeHtml(caption) + "</span>" : "";
    return (
      '<div class="wa-media wa-media--' + format.toLowerCase() + '">' + icon(format, 40) +
      '<span class="wa-media-label">' + escapeHtml(MEDIA_LABELS[format] || format) + "</span>" + sample + "</div>"
    );
  }

  /* --- Each kind, as the customer sees it --------------------------------------------------------- */

  function previewText() {
    var text = value("text");
    var body = text.trim() ? formatted(text, {}) : placeholder("Your message appears here as you type.");
    var media = "";
    var link = checked("preview_url") && /https?:\/\/[^\s]+/.exec(text);
    if (link) {
      var host = link[0].replace(/^https?:\/\//, "").split(/[/?#]/)[0];
      media = '<div class="msg-link-preview">' + icon("URL") + "<span>" + escapeHtml(host) + "</span></div>";
    }
    return card({ media: media, body: body });
  }

  function mediaKind(link) {
    var chosen = value("media_type");
    if (chosen) return chosen;
    var path = String(link || "").split(/[?#]/)[0].toLowerCase();
    var dot = path.lastIndexOf(".");
    var extension = dot === -1 ? "" : path.slice(dot);
    var kinds = Object.keys(data.mediaExtensions);
    for (var i = 0; i < kinds.length; i++) {
      if (data.mediaExtensions[kinds[i]].indexOf(extension) !== -1) return kinds[i];
    }
    return "document";
  }

  function previewMedia() {
    var link = value("media").trim();
    var kind = mediaKind(link);
    var name = value("filename").trim() || (link ? link.split(/[?#]/)[0].split("/").pop() : "");
    var caption = value("caption");
    if (kind === "sticker") {
      return '<div class="wa-card msg-sticker">' + mediaBlock("STICKER", name) + "</div>";
    }
    var body = caption.trim() && kind !== "audio" ? formatted(caption, {}) : link ? "" : placeholder("Add a link or a media id.");
    return card({ media: mediaBlock(kind.toUpperCase(), name), body: body });
  }

  function previewLocation() {
    var name = value("location_name").trim();
    var address = value("location_address").trim();
    var lat = value("latitude");
    var lng = value("longitude");
    var coordinates = lat !== "" && lng !== "" ? lat + ", " + lng : "";
    var body = name ? "<strong>" + escapeHtml(name) + "</strong>" : "";
    if (address) body += (body ? "<br>" : "") + escapeHtml(address);
    if (!body) body = coordinates ? escapeHtml(coordinates) : placeholder("Give a latitude and longitude.");
    return card({ media: mediaBlock("LOCATION", coordinates), body: body });
  }

  function frame() {
    var body = value("interactive_body");
    return {
      header: value("interactive_header").trim() ? escapeHtml(value("interactive_header")) : "",
      body: body.trim() ? formatted(body, {}) : placeholder("Write the body of the message."),
      footer: value("interactive_footer").trim(),
    };
  }

  function previewButtons() {
    var parts = frame();
    parts.buttons = [];
    slotNumbers("button").forEach(function (slot) {
      var title = value("button_" + slot + "_title").trim();
      if (title) parts.buttons.push({ type: "QUICK_REPLY", text: title });
    });
    return card(parts);
  }

  function listSections() {
    var sections = [];
    var bySection = {};
    slotNumbers("row").forEach(function (slot) {
      var title = value("row_" + slot + "_title").trim();
      var description = value("row_" + slot + "_description").trim();
      var section = value("row_" + slot + "_section").trim();
      if (!title && !description && !section) return;
      if (!(section in bySection)) {
        bySection[section] = { title: section, rows: [] };
        sections.push(bySection[section]);
      }
      bySection[section].rows.push({ title: title, description: description });
    });
    return sections;
  }

  function previewList() {
    var parts = frame();
    parts.buttons = [{ type: "LIST", text: value("list_button").trim() || "Button text" }];
    var html = card(parts);
    var sections = listSections();
    if (sections.length) {
      html += '<div class="msg-list-sheet" aria-label="What the button opens"><div class="msg-list-sheet-title">' +
        escapeHtml(value("list_button").trim() || "Options") + "</div>";
      sections.forEach(function (section) {
        if (section.title) html += '<div class="msg-list-section">' + escapeHtml(section.title) + "</div>";
        section.rows.forEach(function (row) {
          html += '<div class="msg-list-row"><div><div class="msg-list-row-title">' + escapeHtml(row.title || "—") +
            "</div>" + (row.description ? '<div class="msg-list-row-description">' + escapeHtml(row.description) + "</div>" : "") +
            '</div><span class="msg-list-radio" aria-hidden="true"></span></div>';
        });
      });
      html += "</div>";
    }
    return html;
  }

  function previewReaction() {
    var target = value("reaction_message_id").trim();
    var emoji = value("emoji").trim();
    var quoted = target ? "Customer's message " + target.slice(0, 24) + (target.length > 24 ? "…" : "") : "The customer's message";
    return (
      '<div class="wa-card msg-reaction-card"><div class="wa-bubble msg-reaction-target"><div class="wa-body">' +
      placeholder(quoted) + '</div><span class="wa-time">' + now() + "</span></div>" +
      '<span class="msg-reaction" title="' + (emoji ? "Your reaction" : "Removes your reaction") + '">' +
      (emoji ? escapeHtml(emoji) : "✕") + "</span></div>"
    );
  }

  /* Positional templates number header and body variables separately; named ones share one mapping. */
  function templateValues(template) {
    var filled = { header: {}, body: {}, media: "" };
    (template.params || []).forEach(function (spec) {
      var input = document.querySelector('[name="' + spec.field + '"]');
      var entered = input ? input.value.trim() : "";
      if (!spec["var"]) {
        if (spec.part === "header" && !filled.media) filled.media = entered;
        return;
      }
      filled[spec.part === "header" ? "header" : "body"][spec["var"]] = entered;
      if (template.named) filled[spec.part === "header" ? "body" : "header"][spec["var"]] = entered;
    });
    return filled;
  }

  function previewTemplate() {
    var template = data.templates[value("template")];
    if (!template) return card({ body: placeholder("Choose an approved template.") });
    var filled = templateValues(template);
    var parts = { body: template.body ? formatted(template.body, filled.body) : "", footer: template.footer };
    var format = template.header.format;
    if (format === "TEXT" && template.header.text) parts.header = formatted(template.header.text, filled.header);
    else if (format) parts.media = mediaBlock(format, filled.media);
    parts.buttons = (template.buttons || []).map(function (button) {
      return { type: button.type, text: button.text || (button.type === "COPY_CODE" ? "Copy offer code" : "") };
    });
    return card(parts);
  }

  var PREVIEWS = {
    text: previewText,
    media: previewMedia,
    location: previewLocation,
    template: previewTemplate,
    buttons: previewButtons,
    list: previewList,
    reaction: previewReaction,
  };

  /* --- The form -------------------------------------------------------------------------------- */

  function kind() {
    var chosen = document.querySelector('input[name="message_type"]:checked');
    return chosen ? chosen.value : "text";
  }

  function syncKind() {
    var current = kind();
    document.querySelectorAll("fieldset.msg-kind").forEach(function (fieldset) {
      var shown = fieldset.classList.contains("msg-kind--" + current);
      if (fieldset.classList.contains("msg-template-params") && !fieldset.querySelector(".form-row")) shown = false;
      fieldset.hidden = !shown;
    });
    document.querySelectorAll('input[name="message_type"]').forEach(function (radio) {
      var label = radio.closest("label");
      if (label) label.classList.toggle("msg-kind-tab--selected", radio.checked);
    });
  }

  function syncSender() {
    var sender = data.senders[value("sender")];
    var business = byId("msg-preview-business");
    if (business) business.textContent = sender ? sender.label + " · " + sender.number : data.businessName;
    // Templates belong to one business account: offer only the sender's.
    var select = byId("id_template");
    if (!select) return;
    Array.prototype.forEach.call(select.options, function (option) {
      var template = data.templates[option.value];
      option.hidden = Boolean(template && sender && template.waba_id !== sender.waba_id);
      option.disabled = option.hidden;
    });
    if (select.selectedOptions[0] && select.selectedOptions[0].hidden) select.value = "";
  }

  function paramRow(spec) {
    var id = "id_" + spec.field;
    var remembered_value = remembered[spec.field] != null ? remembered[spec.field] : "";
    var type = spec.location === "latitude" || spec.location === "longitude" ? "number" : "text";
    return (
      '<div class="form-row field-' + escapeHtml(spec.field) + '"><div><div class="flex-container">' +
      '<label for="' + id + '"' + (spec.required === false ? "" : ' class="required"') + ">" + escapeHtml(spec.label) + ":</label>" +
      '<input type="' + type + '"' + (type === "number" ? ' step="any"' : ' class="vTextField"') + ' name="' + escapeHtml(spec.field) +
      '" id="' + id + '" value="' + escapeHtml(remembered_value) + '" placeholder="' + escapeHtml(spec.sample || "") +
      '" data-template-part="' + escapeHtml(spec.part) + '"></div>' +
      (spec.help ? '<div class="help"><div>' + escapeHtml(spec.help) + "</div></div>" : "") + "</div></div>"
    );
  }

  function syncTemplateParams() {
    var fieldset = document.querySelector("fieldset.msg-template-params");
    if (!fieldset) return;
    var chosen = value("template");
    if (fieldset.getAttribute("data-template") === chosen) return; // unchanged: keep focus and errors
    fieldset.querySelectorAll(".form-row input").forEach(function (input) {
      remembered[input.name] = input.value;
    });
    fieldset.querySelectorAll(".form-row").forEach(function (row) {
      row.remove();
    });
    var template = data.templates[chosen];
    var specs = template ? template.params : [];
    fieldset.insertAdjacentHTML("beforeend", specs.map(paramRow).join(""));
    fieldset.setAttribute("data-template", chosen);
  }

  /* Reply-button and list rows: the first shows, the others when asked for (or when filled). */
  function slotNumbers(prefix) {
    var numbers = [];
    document.querySelectorAll('[name^="' + prefix + '_"][name$="_title"]').forEach(function (input) {
      numbers.push(Number(input.name.split("_")[1]));
    });
    return numbers;
  }

  function slotRow(prefix, slot) {
    var input = byId("id_" + prefix + "_" + slot + "_title");
    return input ? input.closest(".form-row") : null;
  }

  function slotIsEmpty(prefix, slot) {
    var row = slotRow(prefix, slot);
    return !row || Array.prototype.every.call(row.querySelectorAll("input"), function (input) {
      return !input.value.trim();
    });
  }

  function installSlots(prefix, noun) {
    var slots = slotNumbers(prefix);
    if (!slots.length) return;
    var lastFilled = 0;
    slots.forEach(function (slot) {
      var row = slotRow(prefix, slot);
      if (!slotIsEmpty(prefix, slot) || row.querySelector(".errorlist")) lastFilled = slot;
    });
    var visible = Math.max(1, lastFilled);
    slots.forEach(function (slot) {
      slotRow(prefix, slot).hidden = slot > visible;
    });
    var add = document.createElement("button");
    add.type = "button";
    add.className = "button msg-add-slot";
    add.id = "msg-add-" + prefix;
    add.textContent = "+ Add " + noun;
    add.hidden = visible >= slots.length;
    add.addEventListener("click", function () {
      var next = slots.filter(function (slot) {
        return slotRow(prefix, slot).hidden;
      })[0];
      if (!next) return;
      slotRow(prefix, next).hidden = false;
      add.hidden = next >= slots[slots.length - 1];
      byId("id_" + prefix + "_" + next + "_title").focus();
    });
    var last = slotRow(prefix, slots[slots.length - 1]);
    last.parentNode.insertBefore(add, last.nextSibling);
  }

  function installCounters(root) {
    (root || document).querySelectorAll("[data-limit]").forEach(function (input) {
      if (input.dataset.counted) return;
      input.dataset.counted = "1";
      var limit = Number(input.getAttribute("data-limit"));
      var counter = document.createElement("span");
      counter.className = "tpl-counter msg-counter";
      counter.setAttribute("aria-live", "polite");
      input.insertAdjacentElement("afterend", counter);
      var refresh = function () {
        var length = Array.from(input.value).length;
        counter.textContent = length + "/" + limit;
        counter.classList.toggle("tpl-counter--over", length > limit);
      };
      input.addEventListener("input", refresh);
      refresh();
    });
  }

  function render() {
    var chat = byId("msg-preview");
    if (!chat) return;
    var draw = PREVIEWS[kind()] || previewText;
    chat.innerHTML = draw();
  }

  function update() {
    syncKind();
    syncSender();
    syncTemplateParams();
    syncKind(); // the template's variables may have appeared or gone
    render();
  }

  function start() {
    var chat = byId("msg-preview");
    if (!chat) return; // the changelist and detail pages load this file too
    var source = byId("msg-compose-data");
    if (source) data = JSON.parse(source.textContent);
    var form = chat.closest("form");
    var fieldset = document.querySelector("fieldset.msg-template-params");
    if (fieldset) fieldset.setAttribute("data-template", value("template"));
    installCounters();
    installSlots("button", "button");
    installSlots("row", "row");
    form.addEventListener("input", update);
    form.addEventListener("change", update);
    update();
    document.documentElement.classList.add("msg-compose-ready");
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
