// make bench, section 8: one of 30 small files standing in for a page's assets (README.md)
export function carousel(root) {
  const items = root.querySelectorAll("[data-carousel]");
  for (const item of items) {
    item.addEventListener("click", (event) => {
      event.preventDefault();
      item.classList.toggle("carousel-open");
      item.setAttribute("aria-expanded", String(item.classList.contains("carousel-open")));
    });
  }
  return items.length + 5;
}
