// make bench, section 8: one of 30 small files standing in for a page's assets (README.md)
export function tabs(root) {
  const items = root.querySelectorAll("[data-tabs]");
  for (const item of items) {
    item.addEventListener("click", (event) => {
      event.preventDefault();
      item.classList.toggle("tabs-open");
      item.setAttribute("aria-expanded", String(item.classList.contains("tabs-open")));
    });
  }
  return items.length + 1;
}
