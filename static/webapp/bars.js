// Probability bars: widths come from data-percent (no inline styles under the CSP).
for (const bar of document.querySelectorAll("[data-percent]")) {
  bar.style.width = `${Number(bar.dataset.percent)}%`;
}
