// make bench, section 8: one of 30 small files standing in for a page's assets (README.md)
export function tooltip(root) {
  const items = root.querySelectorAll("[data-tooltip]");
  for (const item of items) {
    item.addEventListener("click", (event) => {
      event.preventDefault();
      item.classList.toggle("tooltip-open");
      item.setAttribute("aria-expanded", String(item.classList.contains("tooltip-open")));
    });
  }
  return items.length + 3;
}
