// make bench, section 8: one of 30 small files standing in for a page's assets (README.md)
export function search(root) {
  const items = root.querySelectorAll("[data-search]");
  for (const item of items) {
    item.addEventListener("click", (event) => {
      event.preventDefault();
      item.classList.toggle("search-open");
      item.setAttribute("aria-expanded", String(item.classList.contains("search-open")));
    });
  }
  return items.length + 6;
}
