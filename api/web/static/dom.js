// DOM building shared by the page scripts (job.js, placement.js): window.L2LDom.el.
(function () {
  "use strict";

  const SVG = "http://www.w3.org/2000/svg";

  // el("div", {class: "x", text: "hi"}, [children]); "svg:rect" makes an SVG element. Attributes
  // that are null, undefined or false are left out, so callers can pass them conditionally.
  function el(tag, attrs, children) {
    const node = tag.startsWith("svg:") ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
    for (const [key, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (key === "text") node.textContent = value;
      else if (key === "class" && !tag.startsWith("svg:")) node.className = value;
      else node.setAttribute(key, value);
    }
    for (const child of children || []) if (child) node.append(child);
    return node;
  }

  window.L2LDom = { el };
})();
