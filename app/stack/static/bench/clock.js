// make bench, section 8: one of 30 small files standing in for a page's assets (README.md)
export function clock(root) {
  const items = root.querySelectorAll("[data-clock]");
  for (const item of items) {
    item.addEventListener("click", (event) => {
      event.preventDefault();
      item.classList.toggle("clock-open");
      item.setAttribute("aria-expanded", String(item.classList.contains("clock-open")));
    });
  }
  return items.length + 8;
}
