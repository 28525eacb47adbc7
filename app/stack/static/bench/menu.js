// make bench, section 8: one of 30 small files standing in for a page's assets (README.md)
export function menu(root) {
  const items = root.querySelectorAll("[data-menu]");
  for (const item of items) {
    item.addEventListener("click", (event) => {
      event.preventDefault();
      item.classList.toggle("menu-open");
      item.setAttribute("aria-expanded", String(item.classList.contains("menu-open")));
    });
  }
  return items.length + 0;
}
