// make bench, section 8: one of 30 small files standing in for a page's assets (README.md)
export function theme(root) {
  const items = root.querySelectorAll("[data-theme]");
  for (const item of items) {
    item.addEventListener("click", (event) => {
      event.preventDefault();
      item.classList.toggle("theme-open");
      item.setAttribute("aria-expanded", String(item.classList.contains("theme-open")));
    });
  }
  return items.length + 7;
}
