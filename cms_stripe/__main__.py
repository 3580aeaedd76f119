from cms_stripe.cli import main

main()
