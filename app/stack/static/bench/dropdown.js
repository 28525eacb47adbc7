// make bench, section 8: one of 30 small files standing in for a page's assets (README.md)
export function dropdown(root) {
  const items = root.querySelectorAll("[data-dropdown]");
  for (const item of items) {
    item.addEventListener("click", (event) => {
      event.preventDefault();
      item.classList.toggle("dropdown-open");
      item.setAttribute("aria-expanded", String(item.classList.contains("dropdown-open")));
    });
  }
  return items.length + 4;
}
