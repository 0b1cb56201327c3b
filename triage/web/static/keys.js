// Keyboard shortcuts: a key presses the element marked data-key="KEY" on the page (a form is
// submitted, a field focused, a link followed). Keys typed into a field stay in the field.
"use strict";
document.addEventListener("keydown", function (event) {
  if (event.ctrlKey || event.metaKey || event.altKey || event.isComposing) {
    return;
  }
  var target = event.target;
  if (target && (target.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(target.tagName))) {
    return;
  }
  var key = event.key.toLowerCase();
  if (!/^[a-z\/]$/.test(key)) {
    return;
  }
  var element = document.querySelector('[data-key="' + key + '"]');
  if (!element) {
    return;
  }
  event.preventDefault();
  if (element.tagName === "FORM") {
    element.requestSubmit();
  } else if (/^(INPUT|TEXTAREA|SELECT)$/.test(element.tagName)) {
    element.focus();
  } else {
    element.click();
  }
});
