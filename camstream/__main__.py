from camstream.cli import console

console()
