// make bench, section 8: one of 30 small files standing in for a page's assets (README.md)
export function analytics(root) {
  const items = root.querySelectorAll("[data-analytics]");
  for (const item of items) {
    item.addEventListener("click", (event) => {
      event.preventDefault();
      item.classList.toggle("analytics-open");
      item.setAttribute("aria-expanded", String(item.classList.contains("analytics-open")));
    });
  }
  return items.length + 9;
}
