// make bench, section 8: one of 30 small files standing in for a page's assets (README.md)
export function modal(root) {
  const items = root.querySelectorAll("[data-modal]");
  for (const item of items) {
    item.addEventListener("click", (event) => {
      event.preventDefault();
      item.classList.toggle("modal-open");
      item.setAttribute("aria-expanded", String(item.classList.contains("modal-open")));
    });
  }
  return items.length + 2;
}
