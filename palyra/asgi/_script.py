"""The console's one script, served from the package (``/static/console.js``,
``script-src 'self'``): small conveniences over pages that work without it.

- a form with ``data-confirm`` asks before it is sent (revoking, removing);
- a just-made token's secret gets a "Copy" button;
- a ``select`` with ``data-autosubmit`` sends its form when changed (the
  form's own button stays, for keyboards and for browsers without script).

It reads and writes nothing but the page: no storage, no cookies, no
requests of its own.
"""

from __future__ import annotations

__all__ = ["SCRIPT"]

SCRIPT = b"""'use strict';
document.addEventListener('DOMContentLoaded', function () {
  document.querySelectorAll('form[data-confirm]').forEach(function (form) {
    form.addEventListener('submit', function (event) {
      if (!window.confirm(form.getAttribute('data-confirm'))) {
        event.preventDefault();
      }
    });
  });
  document.querySelectorAll('select[data-autosubmit]').forEach(function (select) {
    select.addEventListener('change', function () { select.form.submit(); });
  });
  if (!navigator.clipboard) { return; }
  document.querySelectorAll('code.secret').forEach(function (code) {
    var button = document.createElement('button');
    button.type = 'button';
    button.className = 'copy';
    button.textContent = 'Copy';
    button.addEventListener('click', function () {
      navigator.clipboard.writeText(code.textContent).then(function () {
        button.textContent = 'Copied';
      });
    });
    code.after(button);
  });
});
"""
